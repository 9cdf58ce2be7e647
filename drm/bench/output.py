"""How every benchmark prints its figures."""
import json


def print_figures(out: dict, as_json: bool, width: int = 16) -> None:
    """A benchmark's figures: one JSON object, or one `name: value` line each."""
    if as_json:
        print(json.dumps(out))
        return
    for key, value in out.items():
        print(f"{key:>{width}}: {value}")
