"""The test suite: a package, so that test folders may repeat basenames and helpers import as tests.helpers."""
