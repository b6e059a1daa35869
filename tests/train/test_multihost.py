"""Two processes on loopback (CPU collectives via gloo) train like one process.

Each process owns one CPU device and reads only its half of every global batch; the reference
is one process with two devices fed the same global batches. The data layer guarantees the
batches; this test checks that the trainer assembles them into the same global arrays and that
the cross-process reductions give the same parameters.
"""

from __future__ import annotations

import os
import socket
import subprocess

import numpy as np

from tests.train.runs import REPO, final_params, main_command


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path, data_dir):
  single = str(tmp_path / "single")
  command, env = main_command(single, data_dir, total_steps=20)
  subprocess.run(command, env=env, cwd=REPO, check=True, capture_output=True)

  multi = str(tmp_path / "multi")
  address = f"127.0.0.1:{_free_port()}"
  processes = []
  for process_id in range(2):
    command, env = main_command(multi, data_dir, "--distributed",
                                f"--coordinator_address={address}", "--num_processes=2",
                                f"--process_id={process_id}", devices=1, total_steps=20)
    processes.append(subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
  outputs = [p.communicate(timeout=300)[0] for p in processes]
  for p, output in zip(processes, outputs):
    assert p.returncode == 0, output[-3000:]

  step, params = final_params(multi)
  assert step == 20
  for x, y in zip(final_params(single)[1], params):
    np.testing.assert_array_equal(x, y)
  # Only process 0 writes the run's files.
  assert os.path.exists(os.path.join(multi, "metrics.jsonl"))
