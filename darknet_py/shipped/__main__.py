"""python -m darknet_py.shipped: the shipped files' paths and the demo command that uses them."""
from . import demo_command, files


def main() -> int:
    for p in files():
        print(p)
    print()
    print("demo:", demo_command())
    return 0


raise SystemExit(main())
