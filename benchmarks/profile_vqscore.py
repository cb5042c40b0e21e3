"""Where VQScore scoring spends its time: cProfile of ``score_files`` (decoding included).

    python benchmarks/profile_vqscore.py [--files 200] [--precision float32|bfloat16] [--threads 2]
        [--folder DIR ...]

Writes speech-like files of 5 s (as ``bench_vqscore.py``; ``--folder``: the audio files found there
instead), scores them once untimed, then once under cProfile, one batch at a time, and prints the
functions with the most own time.
"""

import argparse
import cProfile
import os
import pstats
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16"),
                        help="float32 (default, as VQScore and sqe score) or bfloat16 convolutions")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--folder", nargs="+", default=None, metavar="DIR",
                        help="profile these folders' audio files (at most --files) instead of synthetic ones")
    args = parser.parse_args()
    import torch
    from bench_vqscore import make_files

    from speechbrain_sqe.inference.batch_scoring import score_files
    from speechbrain_sqe.inference.quality import VQScore

    torch.set_num_threads(args.threads)
    if args.folder:
        from speechbrain_sqe.dataio.files import expand_audio_inputs

        paths = expand_audio_inputs(args.folder)[: args.files]
        if not paths:
            sys.exit(f"no audio files in {' '.join(args.folder)}")
    else:
        paths = make_files(tempfile.mkdtemp(), args.files, 5.0)
    scorer = VQScore.from_hparams(source=VQScore.DEFAULT_SOURCE, precision=args.precision)
    score_files(scorer, paths, batch_size=args.batch_size, num_workers=0, progress=False, threads=1)
    profile = cProfile.Profile()
    profile.enable()
    score_files(scorer, paths, batch_size=args.batch_size, num_workers=0, progress=False, threads=1)
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(18)


if __name__ == "__main__":
    main()
