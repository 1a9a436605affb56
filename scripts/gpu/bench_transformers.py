#!/usr/bin/env python3
"""The peer in dsbench engine's GPU comparison: Hugging Face transformers' generate() on the
same model directory, batch sizes, prompt and output lengths, greedy, on one CUDA device.

  python3 scripts/gpu/bench_transformers.py --model DIR --batch 1,32 --prompt-len 128 --gen 64 \
      [--json FILE]

For each batch size: random prompt ids (fixed seed) of --prompt-len tokens, one untimed
warm-up, then
  - prefill: one forward over the batch's prompts (use_cache=True), timed;
  - generate: generate(max_new_tokens=gen, min_new_tokens=gen, do_sample=False), timed;
  decode tokens/s = batch * (gen - 1) / (generate time - prefill time)
(generate's first token comes out of its prefill, so the other gen - 1 are decode steps).
Times are wall clock around torch.cuda.synchronize(). The model runs in bf16 with the
attention transformers picks by default (sdpa). Only torch and transformers are needed.
Exit 2 on a setup problem (no torch, no GPU).
"""
import argparse
import json
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="model directory (dsgen output)")
    ap.add_argument("--batch", default="1,32", help="batch sizes, comma separated")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="write the results as JSON to this file")
    args = ap.parse_args()
    if args.gen < 2:
        print("bench_transformers: --gen must be at least 2", file=sys.stderr)
        return 2
    try:
        import torch
        from transformers import AutoModelForCausalLM
    except ImportError as e:
        print(f"bench_transformers: {e}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("bench_transformers: no CUDA device", file=sys.stderr)
        return 2

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16).to("cuda")
    model.eval()
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(args.seed)
    results = []

    def timed(fn):
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        return time.perf_counter() - start, out

    for batch in [int(b) for b in args.batch.split(",")]:
        ids = torch.randint(0, vocab, (batch, args.prompt_len), generator=gen).to("cuda")
        mask = torch.ones_like(ids)
        kwargs = dict(attention_mask=mask, max_new_tokens=args.gen, min_new_tokens=args.gen,
                      do_sample=False, pad_token_id=0)
        with torch.inference_mode():
            model.generate(ids, **kwargs)  # warm-up
            prefill_s, _ = timed(lambda: model(ids, attention_mask=mask, use_cache=True))
            generate_s, out = timed(lambda: model.generate(ids, **kwargs))
        produced = out.shape[1] - args.prompt_len
        decode_s = max(generate_s - prefill_s, 1e-9)
        r = {
            "batch": batch,
            "prefill_tokens_per_s": batch * args.prompt_len / prefill_s,
            "decode_tokens_per_s": batch * (produced - 1) / decode_s,
            "generate_s": generate_s,
            "tokens_generated_per_sequence": produced,
        }
        results.append(r)
        print(f"batch {batch:4d}: prefill {r['prefill_tokens_per_s']:12.1f} tok/s, "
              f"decode {r['decode_tokens_per_s']:10.1f} tok/s ({produced} tokens each)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "peer": "transformers generate",
                       "torch": torch.__version__, "device": torch.cuda.get_device_name(0),
                       "prompt_len": args.prompt_len, "gen": args.gen, "results": results}, f,
                      indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
