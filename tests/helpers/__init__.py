"""Shared test infrastructure, one module per concern (each module's docstring says what it is the home of)."""
