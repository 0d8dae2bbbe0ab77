"""The baseline for bench/throughput: a minimal Flask route under the same
waitress configuration as `topup serve`. Prints its URL, then serves."""
import argparse
import logging

import waitress.server
from flask import Flask

from topup.processes import place

app = Flask(__name__)


@app.get("/")
def hello():
    return "hello"


def serve(make_app, parser: argparse.ArgumentParser) -> None:
    """Serve make_app(args) as `topup serve` would: the same waitress settings
    and placement (bench/stack.py serves its apps with this too)."""
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # as `topup serve` does
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--cpu", default=None, help="as `topup serve --cpu`")
    args = parser.parse_args()
    served = make_app(args)
    place(args.cpu)  # as `topup serve` places itself
    server = waitress.server.create_server(served, host="127.0.0.1", port=0, threads=args.threads,
                                           ident="topup")
    print(f"serving on http://127.0.0.1:{server.effective_port}/", flush=True)
    server.run()


if __name__ == "__main__":
    serve(lambda args: app, argparse.ArgumentParser())
