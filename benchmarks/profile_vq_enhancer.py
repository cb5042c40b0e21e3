"""Where the shipped VQ enhancer spends its time, and what two alternatives would give.

    python benchmarks/profile_vq_enhancer.py [--files 40] [--threads 1] [--model FOLDER]

Writes speech-like files of 5 s (as ``bench_vqscore.py``), enhances them with ``enhance_files`` once
untimed and once timed (decoding and writing included), prints the torch profiler's operators by
self CPU time, then times one batch of 8 files (best of 3) with the default attention, the MATH and
the flash attention backends, and under bfloat16 autocast, with each output's largest difference
from the default.
"""

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="vq_enhancer",
                        help="hub folder or shipped model name (default: the shipped VQ enhancer; the "
                             "package's default enhancer is BSSE since 2026-12-07)")
    args = parser.parse_args()
    import torch
    from bench_vqscore import make_files
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from speechbrain_sqe.dataio.audio import load_audio
    from speechbrain_sqe.inference.batch_enhancement import enhance_files
    from speechbrain_sqe.inference.hub import load_model

    torch.set_num_threads(args.threads)
    folder = tempfile.mkdtemp()
    paths = make_files(folder, args.files, 5.0)
    outs = [os.path.join(folder, "out", f"{i}.wav") for i in range(len(paths))]
    model = load_model(args.model, "enhancement")
    enhance_files(model, paths[:8], outs[:8], batch_size=8, progress=False)
    start = time.perf_counter()
    enhance_files(model, paths, outs, batch_size=8, progress=False)
    print(f"{5.0 * len(paths) / (time.perf_counter() - start):.0f} x real time, {args.threads} thread(s), batch 8")
    with torch.autograd.profiler.profile() as prof:
        enhance_files(model, paths, outs, batch_size=8, progress=False)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))

    wavs = torch.stack([load_audio(p) for p in paths[:8]])
    lens = torch.ones(wavs.shape[0])

    def run():
        with torch.no_grad():
            return model.enhance_batch(wavs, lens)

    reference = run()
    variants = {"default": None, "math attention": [SDPBackend.MATH], "flash attention": [SDPBackend.FLASH_ATTENTION],
                "bfloat16 autocast": "bf16"}
    for name, how in variants.items():
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            if how == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = run()
            elif how:
                with sdpa_kernel(how):
                    out = run()
            else:
                out = run()
            best = min(best, time.perf_counter() - start)
        print(f"{name}: {best * 1000:.0f} ms per batch of 8 x 5 s; max |diff| {float((out.float() - reference).abs().max()):.3g}"
              f" (output peak {float(reference.abs().max()):.3g})")


if __name__ == "__main__":
    main()
