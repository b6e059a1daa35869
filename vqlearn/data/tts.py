"""A spoken-digit corpus synthesised with real TTS engines: espeak-ng and flite, through sox.

    python -m vqlearn.data.tts --out ~/tts_digits          # 3,160 clips, ~30 s on 2 cores

writes ``<out>/wav/<voice>/<digit>_<i>.wav`` (16 kHz mono int16, leading and trailing silence
trimmed) and ``<out>/labels.csv`` with the columns ``file,label,speaker,split``: the format that
``vqlearn.data.speech``'s folder importer reads, so the corpus is prepared as any user folder is.

Voices: every espeak-ng English accent in ``ESPEAK_ACCENTS`` with every voice variant in
``ESPEAK_VARIANTS`` (each pair is one speaker), and flite's 16 kHz voices ``FLITE_VOICES``. Each
speaker says each digit at every speed x pitch of its engine (espeak-ng ``-s``/``-p``; flite
``duration_stretch``/``int_f0_target_mean``). Test speakers never appear in training: the
variants in ``TEST_VARIANTS`` for every espeak-ng accent and the flite voice ``TEST_FLITE``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from typing import NamedTuple, Sequence

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ESPEAK_ACCENTS = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4")
ESPEAK_SPEEDS = (130, 175)  # words per minute (espeak-ng's default is 175)
ESPEAK_PITCHES = (35, 65)  # 0-99, default 50
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
FLITE_STRETCHES = (0.9, 1.1, 1.3)  # duration_stretch: > 1 speaks slower
FLITE_PITCHES = (90, 120, 150)  # int_f0_target_mean in Hz
TEST_VARIANTS = ("m4", "f3")
TEST_FLITE = "rms"
SAMPLE_RATE = 16000
# sox: trim leading silence below 1% of full scale, reverse, trim again, reverse back.
TRIM = ("silence", "1", "0.01", "1%", "reverse", "silence", "1", "0.01", "1%", "reverse")
TOOLS = {"espeak-ng": "espeak-ng", "flite": "flite", "sox": "sox"}  # command: Debian package


class Clip(NamedTuple):
  """One clip to synthesise: the engine command (writes a WAV to stdout or to ``{out}``)."""
  speaker: str
  digit: int
  index: int  # position among this speaker's takes of this digit
  command: tuple[str, ...]
  split: str


def check_tools(which=shutil.which) -> None:
  """Raises RuntimeError naming the missing commands and the apt-get line that installs them."""
  missing = [tool for tool in TOOLS if which(tool) is None]
  if missing:
    packages = " ".join(sorted({TOOLS[t] for t in missing}))
    raise RuntimeError(f"the TTS corpus needs {', '.join(missing)} on PATH, which "
                       f"{'is' if len(missing) == 1 else 'are'} missing; install with "
                       f"`sudo apt-get install -y {packages}` (Debian/Ubuntu)")


def recipe() -> list[Clip]:
  """Every clip of the corpus, in a fixed order."""
  clips = []
  for accent in ESPEAK_ACCENTS:
    for variant in ESPEAK_VARIANTS:
      speaker = f"espeak:{accent}+{variant}"
      split = "test" if variant in TEST_VARIANTS else "train"
      for digit, word in enumerate(DIGITS):
        takes = [(s, p) for s in ESPEAK_SPEEDS for p in ESPEAK_PITCHES]
        for i, (speed, pitch) in enumerate(takes):
          command = ("espeak-ng", "-v", f"{accent}+{variant}", "-s", str(speed), "-p", str(pitch),
                     "--stdout", word)
          clips.append(Clip(speaker, digit, i, command, split))
  for voice in FLITE_VOICES:
    speaker = f"flite:{voice}"
    split = "test" if voice == TEST_FLITE else "train"
    for digit, word in enumerate(DIGITS):
      takes = [(s, p) for s in FLITE_STRETCHES for p in FLITE_PITCHES]
      for i, (stretch, pitch) in enumerate(takes):
        command = ("flite", "-voice", voice, "--setf", f"duration_stretch={stretch}", "--setf",
                   f"int_f0_target_mean={pitch}", "-t", word, "-o", "{out}")
        clips.append(Clip(speaker, digit, i, command, split))
  return clips


def recipe_hash() -> str:
  """Changes whenever the clips (voices, takes, splits) or their post-processing change."""
  text = json.dumps([list(c) for c in recipe()] + [SAMPLE_RATE, list(TRIM)])
  return hashlib.sha256(text.encode()).hexdigest()[:12]


def relative_path(clip: Clip) -> str:
  folder = clip.speaker.replace(":", "_").replace("+", "_")
  return f"wav/{folder}/{clip.digit}_{clip.index}.wav"


def synthesise(clip: Clip, path: pathlib.Path) -> None:
  """Runs the engine and sox (resample to 16 kHz mono int16, trim silence) into ``path``."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory() as tmp:
    raw = pathlib.Path(tmp) / "raw.wav"
    if clip.command[0] == "flite":
      command = [str(raw) if a == "{out}" else a for a in clip.command]
      subprocess.run(command, check=True, capture_output=True)
    else:  # espeak-ng's --stdout
      with open(raw, "wb") as f:
        subprocess.run(clip.command, check=True, stdout=f, stderr=subprocess.PIPE)
    subprocess.run(["sox", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(path),
                    *TRIM], check=True, capture_output=True)


def generate(out: str | os.PathLike, *, workers: int = 2,
             clips: Sequence[Clip] | None = None) -> pathlib.Path:
  """Synthesises the corpus into ``out`` (see the module docstring) and returns the labels CSV.

  The CSV is written last, after every WAV, so a directory holding it is complete.

  Args:
    out: the corpus directory (created).
    workers: concurrent engine processes.
    clips: a subset of ``recipe()`` (default: all).

  Raises:
    RuntimeError: a TTS tool is missing, or an engine failed on a clip (naming it).
  """
  check_tools()
  out = pathlib.Path(out).expanduser()
  clips = recipe() if clips is None else list(clips)

  def run(clip: Clip) -> None:
    try:
      synthesise(clip, out / relative_path(clip))
    except subprocess.CalledProcessError as e:
      raise RuntimeError(f"{' '.join(e.cmd)} failed ({e.returncode}): "
                         f"{(e.stderr or b'').decode(errors='replace').strip()}") from e

  with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
    list(pool.map(run, clips))
  labels = out / "labels.csv"
  partial = labels.with_suffix(".csv.partial")
  with open(partial, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["file", "label", "speaker", "split"])
    for clip in clips:
      writer.writerow([relative_path(clip), clip.digit, clip.speaker, clip.split])
  partial.rename(labels)
  return labels


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", required=True, help="corpus directory to create")
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
  args = parser.parse_args(argv)
  try:
    labels = generate(args.out, workers=args.workers)
  except RuntimeError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"wrote {sum(1 for _ in open(labels)) - 1} clips; labels in {labels}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
