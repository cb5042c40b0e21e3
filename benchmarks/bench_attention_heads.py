"""CPU flash attention's time against the head size: the measurement behind
``speechbrain_sqe.lobes.local_attention.CPU_HEAD_WIDTH`` (heads below it are zero-padded to it).

    python benchmarks/bench_attention_heads.py [--threads 1] [--repeats 5] [--sizes 4 8 9 16 32]

Times ``F.scaled_dot_product_attention`` on the shape of the VQ enhancer's local attention for a
batch of 8 files of 5 s (8 x 5 chunks x 8 heads, 125 queries, 469 keys) for each head size (best of
``--repeats`` calls), then the VQ enhancer's 9-dimension heads zero-padded to the chosen width and
the largest difference of their output from the unpadded one. Prints a markdown table.
"""

import argparse
import time


def best_ms(function, repeats):
    """Best wall time of ``repeats`` calls after one warm-up call, in milliseconds."""
    function()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 9, 16, 17, 24, 32, 48, 64])
    args = parser.parse_args()
    import torch
    import torch.nn.functional as F

    from speechbrain_sqe.lobes.local_attention import CPU_HEAD_WIDTH

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch, queries, keys = 40, 125, 469
    print(f"CPU flash attention, {batch} x 8 heads x {queries} queries x {keys} keys, {args.threads} thread(s)\n")
    print(f"| head size | ms (best of {args.repeats}) |")
    print("|---|---|")
    for size in args.sizes:
        q, k, v = (torch.randn(batch, 8, n, size) for n in (queries, keys, keys))
        ms = best_ms(lambda q=q, k=k, v=v, size=size: F.scaled_dot_product_attention(q, k, v, scale=size**-0.5),
                     args.repeats)
        print(f"| {size} | {ms:.1f} |")
    q, k, v = (torch.randn(batch, 8, n, 9) for n in (queries, keys, keys))
    scale = 8**-0.5
    plain = F.scaled_dot_product_attention(q, k, v, scale=scale)

    def padded():
        pad = (0, CPU_HEAD_WIDTH - 9)
        return F.scaled_dot_product_attention(F.pad(q, pad), F.pad(k, pad), F.pad(v, pad), scale=scale)[..., :9]

    ms = best_ms(padded, args.repeats)
    difference = float((padded() - plain).abs().max())
    print(f"| 9 zero-padded to {CPU_HEAD_WIDTH} (padding included) | {ms:.1f} (max difference {difference:.1e}) |")


if __name__ == "__main__":
    main()
