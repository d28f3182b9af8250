"""Benchmark of `engagement replay` throughput.

Generates N records with streams.simulate (a realistic mix, 1% bad records by default), writes
them to a temporary kcat-style JSONL file, then times the replay of that file for each engine
(the compiled core `native`, and the pure-Python `python`), each run in a fresh process so that
its peak RSS is its own:
  - in-process: the engine API over the file (no CLI): `streams.native.NativeReplayer` fed in
    1 MiB chunks, or `streams.replay.replay_lines` over the file's lines;
  - CLI: `engagement replay --engine E --config F --as-of T FILE` as a subprocess (interpreter
    start-up, argument parsing and the JSON output included).
Every snapshot must be equal. Prints a markdown table (records/s, peak RSS) to stdout.

usage:
  python bench/replay_bench.py                      # 1,000,000 records, 10,000 users, 7 days
  python bench/replay_bench.py --records 200000 --partitions 8
  python bench/replay_bench.py --records 300000 --profile        # + the top functions
  python bench/replay_bench.py --keep /tmp/bench.jsonl --skip-cli
  python bench/replay_bench.py --records 100000 --json rows.json   # + the rows as JSON
  python bench/replay_bench.py --engines native                    # one engine only
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from streams.simulate import SimConfig, Simulator, envelope_line  # noqa: E402
from streams.timeutil import MS, format_instant  # noqa: E402

START_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z: fixed, so runs compare
CONFIG_TOML = """\
timezone = "UTC"
allowed_lateness_hours = 48
inactive_events = ["impression"]
activation_events = ["profile_completed", "key_action"]
value_event = "key_action"
funnel_steps = ["welcome", "profile", "invite", "tour", "done"]
"""


def _maxrss_bytes(ru_maxrss: int) -> int:
    return ru_maxrss if sys.platform == "darwin" else ru_maxrss * 1024  # Linux: KiB


def _duration(text: str) -> float:
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


def generate(args: argparse.Namespace, path: Path) -> dict[str, Any]:
    duration_s = _duration(args.duration)
    cfg = SimConfig(
        start_ms=START_MS,
        duration_s=duration_s,
        users=args.users,
        rate=args.records / duration_s,
        seed=args.seed,
        partitions=args.partitions,
        bad_fraction=args.bad_fraction,
        max_records=args.records,
    )
    sim = Simulator(cfg)
    t0 = time.perf_counter()
    n = 0
    last_ts = START_MS
    with open(path, "wb") as out:
        chunk: list[bytes] = []
        for rec in sim:
            chunk.append(envelope_line(rec))
            last_ts = rec["ts"]
            if len(chunk) == 8192:
                out.write(b"".join(chunk))
                n += len(chunk)
                chunk.clear()
        out.write(b"".join(chunk))
        n += len(chunk)
    seconds = time.perf_counter() - t0
    return {
        "phase": "generate + write JSONL (streams.simulate)",
        "records": n,
        "seconds": seconds,
        "rss": _maxrss_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
        "as_of": format_instant(last_ts * MS),
        "bytes": path.stat().st_size,
        "counts": sim.counts,
    }


def _child(args: argparse.Namespace) -> int:
    """The in-process phase, run in a fresh interpreter: replay_lines over the file."""
    from streams.config import Config
    from streams.replay import replay_lines

    config = Config.from_mapping({})
    with open(args.child_file, "rb") as fh:
        if args.engine == "native":
            from streams.native import NativeReplayer
            from streams.timeutil import parse_as_of

            def run() -> Any:
                r = NativeReplayer(config, parse_as_of(args.as_of), args.partitions)
                while chunk := fh.read(1 << 20):
                    r.feed_bytes(chunk)
                return r.snapshot()
        else:

            def run() -> Any:
                return replay_lines(fh, config, args.as_of, args.partitions)

        if args.profile:
            snap, seconds = _profiled(run)
        else:
            t0 = time.perf_counter()
            snap = run()
            seconds = time.perf_counter() - t0
    rss = _maxrss_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    json.dump({"seconds": seconds, "rss": rss, "snapshot": snap}, sys.stdout)
    return 0


def _profiled(fn: Any) -> tuple[Any, float]:
    """Run fn under pyinstrument (if installed) or cProfile; print the top functions."""
    t0 = time.perf_counter()
    if importlib.util.find_spec("pyinstrument") is not None:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
        profiler.start()
        result = fn()
        profiler.stop()
        seconds = time.perf_counter() - t0
        print(profiler.output_text(unicode=False, color=False), file=sys.stderr)
        return result, seconds
    import cProfile
    import pstats

    prof = cProfile.Profile()
    result = prof.runcall(fn)
    seconds = time.perf_counter() - t0
    pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    return result, seconds


def _run_timed(cmd: list[str], stdout_path: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run `cmd`, with its exact peak RSS (wait4 on that child only)."""
    with open(stdout_path, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"replay_bench: {' '.join(cmd)} exited with {proc.returncode}")
    return {"seconds": seconds, "rss": _maxrss_bytes(usage.ru_maxrss)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--records", type=int, default=1_000_000, help="records (default 1,000,000)")
    p.add_argument("--users", type=int, default=10_000, help="users (default 10,000)")
    p.add_argument("--duration", default="7d", help="record time covered: 7d, 12h... (7d)")
    p.add_argument("--partitions", type=int, default=1, help="replay partitions (default 1)")
    p.add_argument("--bad-fraction", type=float, default=0.01, help="bad records (0.01)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", metavar="FILE.jsonl", help="write the records here and keep them")
    p.add_argument("--skip-inprocess", action="store_true", help="skip the replay_lines run")
    p.add_argument("--skip-cli", action="store_true", help="skip the `engagement replay` run")
    p.add_argument(
        "--profile",
        action="store_true",
        help="profile the in-process replay (pyinstrument if installed, else cProfile) and "
        "print the top functions to stderr (the timing is then inflated)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON here (bench/run.py)")
    p.add_argument(
        "--engines",
        default="native,python",
        help="comma-separated engines to time: native (the compiled core), python (default: both)",
    )
    p.add_argument("--engine", default="python", help=argparse.SUPPRESS)  # the child's
    p.add_argument("--child-file", help=argparse.SUPPRESS)
    p.add_argument("--as-of", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_file:
        return _child(args)

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="replay-bench-") as tmp:
        tmpdir = Path(tmp)
        data = Path(args.keep) if args.keep else tmpdir / "records.jsonl"
        print(f"replay_bench: generating {args.records:,} records to {data}", file=sys.stderr)
        gen = generate(args, data)
        rows = [gen]
        snaps: dict[str, Any] = {}
        for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
            if engine not in ("native", "python"):
                raise SystemExit(f"replay_bench: unknown engine {engine!r}")
            if not args.skip_inprocess:
                print(f"replay_bench: {engine} engine, in-process", file=sys.stderr)
                cmd = [sys.executable, str(Path(__file__).resolve()), "--child-file", str(data)]
                cmd += ["--as-of", gen["as_of"], "--partitions", str(args.partitions)]
                cmd += ["--engine", engine]
                if args.profile:
                    cmd.append("--profile")
                result_path = tmpdir / f"inprocess-{engine}.json"
                _run_timed(cmd, result_path, env)  # the child times the replay itself
                inner = json.loads(result_path.read_text())
                snaps[f"{engine} in-process"] = inner["snapshot"]
                label = f"{engine} engine, in-process" + (" (profiled)" if args.profile else "")
                rows.append({"phase": label, "records": gen["records"], "engine": engine, **inner})
            if not args.skip_cli:
                print(f"replay_bench: engagement replay --engine {engine}", file=sys.stderr)
                config = tmpdir / "engagement.toml"
                config.write_text(CONFIG_TOML)
                cmd = [sys.executable, "-m", "engagement_cli", "replay", "--config", str(config)]
                cmd += ["--as-of", gen["as_of"], "--partitions", str(args.partitions)]
                cmd += ["--engine", engine, "--progress", "none", str(data)]
                snap_path = tmpdir / f"snapshot-{engine}.json"
                res = _run_timed(cmd, snap_path, env)
                snaps[f"{engine} CLI"] = json.loads(snap_path.read_text())
                rows.append(
                    {
                        "phase": f"`engagement replay --engine {engine}` CLI, subprocess",
                        "records": gen["records"],
                        "engine": engine,
                        **res,
                    }
                )
        first = next(iter(snaps.values()), None)
        differ = [name for name, s in snaps.items() if s != first]
        if differ:
            print(f"replay_bench: snapshots differ: {', '.join(differ)}!", file=sys.stderr)
            return 1
        snap = next(iter(snaps.values()), None)
    _report(args, gen, rows, snap)
    if args.json:
        keep = ("phase", "records", "seconds", "rss", "engine")
        with open(args.json, "w") as fh:
            json.dump({"rows": [{k: r[k] for k in keep if k in r} for r in rows]}, fh)
    return 0


def _report(
    args: argparse.Namespace, gen: dict[str, Any], rows: list[dict[str, Any]], snap: Any
) -> None:
    c = gen["counts"]
    bad = sum(c[k] for k in ("too_large", "bad_json", "schema", "future", "too_late"))
    print(f"### replay benchmark: {gen['records']:,} records\n")
    print(
        f"- {platform.python_implementation()} {platform.python_version()} on "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    )
    print(
        f"- {args.users:,} users, {args.duration} of record time, seed {args.seed}, "
        f"{args.partitions} replay partition(s); file {gen['bytes'] / 2**20:,.0f} MiB; "
        f"{bad:,} rejected and {c['duplicate']:,} duplicates on purpose; as of {gen['as_of']}"
    )
    if snap is not None:
        print(
            f"- snapshot: accepted {snap['accepted']:,}, duplicates {snap['duplicates']:,}, "
            f"rejected {sum(snap['rejected'].values()):,}, mau {snap['mau']:,}"
        )
    print("\n| phase | records | seconds | records/s | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        rate = r["records"] / r["seconds"] if r["seconds"] else float("inf")
        print(
            f"| {r['phase']} | {r['records']:,} | {r['seconds']:.2f} | {rate:,.0f} | "
            f"{r['rss'] / 2**20:,.0f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
