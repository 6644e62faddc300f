"""`python -m training.demo` is kept as an alias of `python -m workflows.demo` (the demo trains and exports,
so it lives above both `training` and `export`; nothing imports this module)."""
import runpy

if __name__ == "__main__":
    runpy.run_module("workflows.demo", run_name="__main__", alter_sys=True)
