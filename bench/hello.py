"""The baseline for bench/throughput: a minimal Flask route under the same
waitress configuration as `topup serve`. Prints its URL, then serves."""
import argparse
import logging
import sys

import waitress.server
from flask import Flask

from topup.processes import place

app = Flask(__name__)


@app.get("/")
def hello():
    return "hello"


if __name__ == "__main__":
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # as `topup serve` does
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--cpu", default=None, help="as `topup serve --cpu`")
    args = parser.parse_args()
    place(args.cpu)  # as `topup serve` places itself
    server = waitress.server.create_server(app, host="127.0.0.1", port=0, threads=args.threads,
                                           ident="topup")
    print(f"serving on http://127.0.0.1:{server.effective_port}/", flush=True)
    sys.stdout.flush()
    server.run()
