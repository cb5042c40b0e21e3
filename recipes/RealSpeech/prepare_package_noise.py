#!/usr/bin/env python3
"""More kinds of real training noise, from sound files that Debian packages install.

    apt-get install megaglest-data colobot-common-sounds        # or: dpkg-deb -x <package>.deb ROOT
    python recipes/RealSpeech/prepare_package_noise.py --out data/package_noise
    python train.py hparams/bsse.yaml ... --noise_folder=data/package_noise/splits.csv

Why: the project has 8 real training noises (``../shared/data/real/splits.csv``) and may download
no dataset, and the enhancers trained on them do not carry their noise removal over to the test
noises (README, BSSE). Debian's game-data packages install recorded ambiences (rain, wind, birds,
night insects, a desert day), music and machine sounds under free licences (megaglest-data:
CC-BY-SA-3.0; colobot-common-sounds: GPL-3+; each package's ``/usr/share/doc/<package>/copyright``).
This script turns them into training noise: every file of the patterns below that lasts at least
``--min-seconds``, read with soundfile (Ogg Vorbis or WAV), down-mixed, resampled to 16 kHz, cut to
``--max-seconds``, identical audio (the packages repeat their ambiences) kept once, and at most 5
music tracks a package (music would otherwise outnumber the rest). It writes the
files to ``--out`` and a list ``splits.csv`` (``path,kind,split``) holding every row of
``--base-list`` (absolute paths; its noises, rooms and splits unchanged) plus the new files as
``noise,train``: the test noises and rooms of the base list stay the only test ones, and the new
files never enter a test set. ``SOURCES.md`` in ``--out`` records the packages, versions and
licences. The audio stays out of the repository (``data/`` is ignored), as ``../shared`` asks.
"""

import argparse
import csv
import glob
import hashlib
import os
import subprocess

import numpy as np
import soundfile as sf

from speechbrain_sqe.dataio.audio import load_audio

SAMPLE_RATE = 16000

#: (package, family, glob under the install root, at most this many files): recorded ambiences,
#: music (capped: its long tracks would otherwise outnumber the rest), machine sounds.
PATTERNS = (
    ("megaglest-data", "ambience", "usr/share/games/megaglest/tilesets/*/sounds/*", None),
    ("megaglest-data", "music", "usr/share/games/megaglest/techs/*/factions/*/music/*", 5),
    ("colobot-common-sounds", "music", "usr/share/games/colobot/music/*", 5),
    ("colobot-common-sounds", "machine", "usr/share/games/colobot/sounds/*", None),
)
LICENCES = {"megaglest-data": "CC-BY-SA-3.0", "colobot-common-sounds": "GPL-3+"}


def package_version(package, root):
    """The installed version of ``package`` (dpkg), or 'extracted' for a root other than /."""
    if root != "/":
        return "extracted"
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="/", help="install root of the packages (default /)")
    parser.add_argument("--out", required=True, help="output folder (WAV files, splits.csv, SOURCES.md)")
    parser.add_argument("--base-list", default="../shared/data/real/splits.csv",
                        help="noise/room list whose rows are kept (path,kind,split)")
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)

    os.makedirs(args.out, exist_ok=True)
    seen, kept, counts = set(), [], {}
    for package, family, pattern, cap in PATTERNS:
        taken = 0
        for path in sorted(glob.glob(os.path.join(args.root, pattern))):
            try:
                info = sf.info(path)
            except (RuntimeError, sf.LibsndfileError) as err:
                print(f"skipped {path}: {err}")
                continue
            if info.frames / info.samplerate < args.min_seconds or (cap is not None and taken >= cap):
                continue
            wav = load_audio(path, SAMPLE_RATE, warn=False).numpy()[: int(args.max_seconds * SAMPLE_RATE)]
            digest = hashlib.sha1(np.round(wav, 4).tobytes()).hexdigest()  # the audio, not the bytes:
            if digest in seen:                                              # Ogg streams differ in serial numbers
                continue
            seen.add(digest)
            peak = float(np.abs(wav).max())
            if peak == 0.0:
                continue
            parts = os.path.relpath(path, args.root).split(os.sep)
            name = f"{family}_{parts[-3] if family == 'ambience' else package.split('-')[0]}_{os.path.splitext(parts[-1])[0]}.wav"
            target = os.path.join(args.out, name)
            sf.write(target, 0.5 * wav / peak, SAMPLE_RATE, subtype="PCM_16")
            counts[family] = counts.get(family, 0) + 1
            taken += 1
            kept.append((package, family, target, len(wav) / SAMPLE_RATE))

    if not kept:
        raise SystemExit(f"no sound file of {', '.join(LICENCES)} under {args.root}: install the packages "
                         "(apt-get install ...) or pass the folder they were extracted to as --root")
    base_dir = os.path.dirname(os.path.abspath(args.base_list))
    with open(args.base_list, newline="") as f:
        base_rows = list(csv.DictReader(f))
    with open(os.path.join(args.out, "splits.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "kind", "split"])
        for row in base_rows:
            writer.writerow([os.path.normpath(os.path.join(base_dir, row["path"])), row.get("kind", "noise"), row["split"]])
        for _, _, target, _ in kept:
            writer.writerow([os.path.abspath(target), "noise", "train"])
    with open(os.path.join(args.out, "SOURCES.md"), "w") as f:
        f.write("# Training noise from Debian packages (prepare_package_noise.py)\n\n")
        f.write("| package | version | licence | family | file | seconds |\n|---|---|---|---|---|---|\n")
        versions = {p: package_version(p, args.root) for p, *_ in PATTERNS}
        for package, family, target, seconds in kept:
            f.write(f"| {package} | {versions[package]} | {LICENCES[package]} | {family} | {os.path.basename(target)} | {seconds:.1f} |\n")
    total = sum(s for *_, s in kept)
    print(f"{len(kept)} noise files ({total / 60:.1f} min; " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
          + f") and {len(base_rows)} rows of {args.base_list} -> {os.path.join(args.out, 'splits.csv')}")


if __name__ == "__main__":
    main()
