"""Peak memory and time of `codebook.nearest` for N=65536 rows against K=65536 codes, d=64.

    python benchmarks/large_codebook.py            # 2 interleaved rounds
    python benchmarks/large_codebook.py --quick    # 1 round

Each measurement runs in its own subprocess, so its peak RSS is its own: the child reads its
VmHWM from /proc/self/status (the high-water mark of its own address space since exec). The
rusage `os.wait4` returns for that child is reported too, but it can be no lower than the
parent's RSS when the child was forked (ru_maxrss survives fork+exec), so with a parent that has
imported jax it mostly measures the parent. The full distance matrix
would be 16 GiB; the target is a peak < 1.5 GiB. A baseline subprocess imports jax and
allocates the same inputs (x (N, 1, d), codebook (1, K, d)) without running the kernel, so the
kernel's own share is the difference. The kernel child reports its first call (trace + compile
+ run) and a second, steady call. The limit (fused matmul + row-min at N=16384, K=8192, whose
distance block fits in memory) runs in this parent process between the children; the
fraction is 2NKd / t_steady over that rate.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

N = K = 65536
D = 64
TARGET_GIB = 1.5


def child(mode: str) -> None:
  """Runs in the subprocess: allocate inputs, and in "kernel" mode run nearest twice."""
  import jax
  import jax.numpy as jnp
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
  from vqlearn.quantizers import codebook as cb

  kx, ke = jax.random.split(jax.random.PRNGKey(0))
  x = jax.random.normal(kx, (N, 1, D), jnp.float32)
  e = jax.random.normal(ke, (1, K, D), jnp.float32)
  jax.block_until_ready((x, e))
  result = {"mode": mode}
  if mode == "kernel":
    nearest = jax.jit(cb.nearest)
    for label in ("first_s", "steady_s"):
      start = time.perf_counter()
      idx, _ = jax.block_until_ready(nearest(x, e))
      result[label] = time.perf_counter() - start
    result["codes_used"] = int(jnp.unique(idx).shape[0])
  result["vm_hwm_gib"] = own_peak_gib()
  # On an accelerator the kernel's working memory is on the device: its allocator's peak.
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    result["device_peak_gib"] = stats["peak_bytes_in_use"] / 2**30
  print(json.dumps(result))


def own_peak_gib() -> float:
  """This process's peak RSS since exec (VmHWM), unaffected by the parent's memory."""
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) / 2**20
  return float("nan")


def run_child(mode: str) -> dict:
  """Starts one child, waits for exactly it, returns its report plus its own peak RSS."""
  proc = subprocess.Popen([sys.executable, __file__, "--child", mode], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  # Read the pipes first so a chatty child cannot block, then reap it with wait4 for its rusage.
  out, err = proc.stdout.read(), proc.stderr.read()
  _, status, usage = os.wait4(proc.pid, 0)
  proc.returncode = os.waitstatus_to_exitcode(status)
  if proc.returncode:
    raise RuntimeError(f"{mode} child failed ({proc.returncode}):\n{err}")
  report = json.loads(out.strip().splitlines()[-1])
  report["wait4_maxrss_gib"] = usage.ru_maxrss / 2**20  # KiB on Linux
  report["peak_rss_gib"] = report["vm_hwm_gib"]
  return report


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="one round")
  parser.add_argument("--child", choices=("baseline", "kernel"), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    child(args.child)
    return

  import harness
  harness.set_threads()
  limit = harness.limit_fn(16384, 8192, D)
  rounds = 1 if args.quick else 2
  reports = {"baseline": [], "kernel": []}
  limit_s = []
  for _ in range(rounds):  # baseline, kernel, limit, interleaved
    for mode in reports:
      reports[mode].append(run_child(mode))
    time.sleep(harness.PAUSE_S)
    harness.block(limit())
    limit_s.append(harness.timed(limit))

  med = lambda mode, key: statistics.median(r[key] for r in reports[mode])
  base_gib, kernel_gib = med("baseline", "peak_rss_gib"), med("kernel", "peak_rss_gib")
  wait4_gib = max(r["wait4_maxrss_gib"] for rs in reports.values() for r in rs)
  steady, first = med("kernel", "steady_s"), med("kernel", "first_s")
  limit_gflops = harness.gflops(16384, 8192, D, statistics.median(limit_s))
  kernel_gflops = harness.gflops(N, K, D, steady)
  ok = kernel_gib < TARGET_GIB
  rows = [["baseline (import jax + inputs)", f"{base_gib:.3f}", "", "", ""],
          ["codebook.nearest", f"{kernel_gib:.3f}", f"{kernel_gib - base_gib:.3f}",
           f"{steady:.2f} (first call {first:.2f})",
           f"{kernel_gflops:.0f} GFLOP/s = {100 * kernel_gflops / limit_gflops:.1f}% of "
           f"{limit_gflops:.0f}"]]
  table = harness.markdown_table(
      ["subprocess", "peak RSS GiB", "kernel's share GiB", "time s", "rate"], rows)
  table += "\n\n" + harness.markdown_table(
      ["target", "value", "status"],
      [[f"peak < {TARGET_GIB} GiB", f"{kernel_gib:.3f} GiB", harness.met(ok)]])
  table += (f"\n\nPeak RSS = the child's VmHWM; wait4 ru_maxrss, max over children: "
            f"{wait4_gib:.3f} GiB (floored by this parent's RSS at fork).")
  device_gib = [r["device_peak_gib"] for r in reports["kernel"] if "device_peak_gib" in r]
  if device_gib:
    table += (f"\nDevice allocator peak in the kernel child ({harness.TORCH_DEVICE}, inputs "
              f"included): {max(device_gib):.3f} GiB; naive distance matrix: "
              f"{N * K * 4 / 2**30:.0f} GiB.")
  harness.emit("large_codebook", f"N={N}, K={K}, d={D}, threads={harness.THREADS}\n\n" + table,
               {"N": N, "K": K, "d": D, "quick": args.quick, "rounds": rounds,
                "reports": reports, "peak_rss_gib": {"baseline": base_gib, "kernel": kernel_gib},
                "kernel_share_gib": kernel_gib - base_gib, "wait4_maxrss_gib_max": wait4_gib,
                "device_peak_gib": max(device_gib, default=None),
                "steady_s": steady, "first_s": first,
                "compile_s": first - steady, "limit_gflops": limit_gflops,
                "fraction_of_limit": kernel_gflops / limit_gflops, "target_met": ok})


if __name__ == "__main__":
  main()
