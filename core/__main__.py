import sys

try:
    from .cli import main
except ImportError as exc:  # torch (or another requirement) is not installed for this Python
    name = getattr(exc, "name", None) or str(exc)
    message = (
        f"The worker's Python ({sys.executable}) cannot import {name}: install the requirements "
        "(PyTorch, numpy, pillow, safetensors, tqdm) for it, or point the add-on at a Python "
        "that has them."
    )
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        import json

        print(
            json.dumps(
                {
                    "event": "error",
                    "message": message,
                    "code": "missing_dependency",
                    "hint": "",
                }
            ),
            flush=True,
        )
    else:
        print(f"error: {message}", file=sys.stderr)
    sys.exit(2)

sys.exit(main())
