"""`lethe up`: the vLLM engine and the gateway in one foreground command (what `make run` runs)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

SERVED_NAMES = {
    "base": "smollm2-135m-instruct",
    "target": "lethe-target",
    "oracle": "lethe-oracle",
}


def resolve_model(choice: str) -> tuple[Path, str]:
    """A bundled model name (base, target, oracle) or a directory -> (path, served name)."""
    from stack.engine import resolve_model as model_path

    path = model_path(choice)
    if not (path / "config.json").exists():
        hint = {
            "base": "lethe models prepare",
            "target": "lethe unlearning memorize",
            "oracle": "lethe unlearning memorize",
        }.get(choice)
        raise SystemExit(f"no model at {path}" + (f": run `{hint}`" if hint else ""))
    return path, SERVED_NAMES.get(choice, path.name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="base",
                        help="base (the bundled SmolLM2), target (memorized: `make target`), "
                        "oracle, or a model directory (default: %(default)s)")
    parser.add_argument("--policies", default="policies",
                        help="policy directory (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="gateway address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000,
                        help="gateway port (default: %(default)s)")
    parser.add_argument("--engine-port", type=int, default=8001,
                        help="vLLM port, on 127.0.0.1 only (default: %(default)s)")


def main(args: argparse.Namespace) -> int:
    from gateway.server import serve
    from stack.engine import Engine

    model_dir, served = resolve_model(args.model)
    engine = Engine(
        model_dir,
        served_model_name=served,
        host="127.0.0.1",
        port=args.engine_port,
        decode_policies=args.policies,
    )
    print(f"starting vLLM on {engine.base_url} with {model_dir} (about a minute on CPU)...")
    engine.start()

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        engine.wait_healthy(timeout=600)
        base = f"http://{args.host}:{args.port}/v1"
        print(
            f"\nLethe is up. Base URL: {base}  (model: {served})\n"
            f"  curl {base}/chat/completions -H 'content-type: application/json' \\\n"
            f'    -d \'{{"model": "{served}", "messages": [{{"role": "user", "content": '
            f'"Customer record: Elena Marquez, phone 415-555-0199, born 1987-03-14. '
            f'Repeat her phone number."}}]}}\'\n'
            "  (the record is redacted on the way in and on the way out)\n"
            + (
                "The memorized target model: `make target`, then `make run MODEL=target`.\n"
                if args.model == "base" else ""
            )
            + "Ctrl-C stops both.\n",
            flush=True,
        )
        serve_args = argparse.Namespace(
            upstream=engine.base_url, policies=args.policies, host=args.host, port=args.port
        )
        return serve(serve_args)
    except KeyboardInterrupt:
        return 0
    finally:
        print("stopping vLLM...", file=sys.stderr)
        engine.stop()
