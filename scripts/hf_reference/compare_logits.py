#!/usr/bin/env python3
"""Hold dsrt's logits against Hugging Face transformers on the same model and token ids.

For a few fixed prompts (token ids, so no tokenizer is involved) this runs

  dsrun logits --model DIR --token-ids ... --out TMP.json --isa scalar

(--isa scalar is dsrt's f32 CPU path) and transformers' DeepseekV3ForCausalLM (or whatever
AutoModelForCausalLM maps the config to) in float32 on the same ids, with use_cache=False,
and reports per prompt: the largest absolute logit difference, the logit range of the
reference, their ratio, and at how many positions the argmax agrees. It exits 1 when
max_abs_diff / range exceeds --tolerance for any prompt, 2 on a usage or setup problem.

FP8 checkpoints (config.json has quantization_config): transformers' fine-grained FP8 path
needs a GPU and also quantises the activations to FP8, which dsrt does not do. So this
script dequantises the checkpoint itself into a temporary bf16 copy,
  w[r, c] = bf16(f32(fp8[r, c]) * scale_inv[r // 128, c // 128])      (round to nearest even)
which is bit for bit what dsrt's engine computes from the fp8 weights (kernels/cpu/fp8.h),
drops quantization_config from the copied config.json, and loads that copy. dsrun still
reads the original fp8 directory, so the comparison covers dsrt's fp8 loading too.

Expected differences: dsrt keeps the MLA latent KV cache (the normed compressed KV and the
roped key part) in bf16, so even with f32 compute its logits differ from an all-f32 run by
about 1e-3..1e-2 of the logit range. The default tolerance, 2e-2 of the range, sits above
that and far below what a real mistake gives (a wrong RoPE layout, scale or routing rule
moves logits by a sizeable fraction of the range). --bf16-kv rounds transformers' latent
cache values to bf16 at the same two points as dsrt, which removes that difference; with
it the expected gap is f32 rounding noise (well under 1e-4 of the range), so use a tight
tolerance such as --tolerance 1e-3. A lone position far off with the rest close is usually
an MoE routing near-tie tipped by the bf16 cache: rerun with --bf16-kv to tell it from a bug.

Only the Python standard library, torch, transformers and safetensors (a transformers
dependency) are used. Multi-token-prediction layers (model.layers.<num_hidden_layers>.*)
are not part of DeepseekV3ForCausalLM: transformers warns about the unexpected keys and
ignores them, as dsrt's loader does. Missing keys, on the other hand, would leave random
weights in the reference, so they are an error.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

PROMPT_TOKENS_DEFAULT = 16
PROMPTS_MAX = 16
PROMPT_TOKENS_MAX = 512  # dsrun logits' logits_tokens_max
DEFAULT_TOLERANCE = 2e-2
TRANSFORMERS_MIN = (4, 56)  # DeepseekV3ForCausalLM with rope_interleave


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Compare dsrun logits with Hugging Face transformers on the same model.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit codes: 0 all prompts within tolerance, 1 a prompt over it (or dsrun "
        "failed), 2 usage/setup problem.",
    )
    p.add_argument("--model", required=True, help="model directory (config.json, *.safetensors)")
    p.add_argument("--dsrun", default="build/apps/dsrun/dsrun", help="path to the dsrun binary")
    p.add_argument("--prompts", type=int, default=3, help=f"number of prompts, 1..{PROMPTS_MAX} (default 3)")
    p.add_argument("--prompt-tokens", type=int, default=PROMPT_TOKENS_DEFAULT,
                   help=f"token ids per prompt, 1..{PROMPT_TOKENS_MAX} (default {PROMPT_TOKENS_DEFAULT})")
    p.add_argument("--device", choices=["cuda", "cpu"], default=None,
                   help="where transformers runs (default: cuda when available, else cpu)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                   help="transformers compute dtype (default float32; bfloat16 needs a looser --tolerance)")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help=f"largest allowed max_abs_diff / logit range per prompt (default {DEFAULT_TOLERANCE})")
    p.add_argument("--bf16-kv", action="store_true",
                   help="round transformers' MLA latent cache values to bf16 where dsrt stores them")
    p.add_argument("--isa", default="scalar", help="dsrun --isa (default scalar: dsrt's f32 path)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--keep-temp", action="store_true", help="keep the temporary directory (dsrun output, bf16 copy)")
    args = p.parse_args(argv)
    if not 1 <= args.prompts <= PROMPTS_MAX:
        p.error(f"--prompts must be in 1..{PROMPTS_MAX}")
    if not 1 <= args.prompt_tokens <= PROMPT_TOKENS_MAX:
        p.error(f"--prompt-tokens must be in 1..{PROMPT_TOKENS_MAX}")
    if not args.tolerance > 0:
        p.error("--tolerance must be > 0")
    return args


def fail_setup(message):
    print(f"compare_logits: {message}", file=sys.stderr)
    sys.exit(2)


def make_prompts(count, length, vocab_size):
    """Deterministic token ids in [0, vocab_size): a 64-bit LCG per prompt (Knuth's MMIX
    constants), so the prompts are the same on every machine and Python version. The
    first prompt starts with the two ends of the vocabulary."""
    prompts = []
    for p in range(count):
        state = (0x9E3779B97F4A7C15 * (p + 1)) % 2**64
        ids = []
        for _ in range(length):
            state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
            ids.append((state >> 33) % vocab_size)
        prompts.append(ids)
    prompts[0][0] = 0
    if length > 1:
        prompts[0][1] = vocab_size - 1
    return prompts


def run_dsrun(dsrun, model_dir, ids, out_path, isa):
    cmd = [dsrun, "logits", "--model", model_dir, "--token-ids", ",".join(map(str, ids)),
           "--out", out_path, "--isa", isa]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        print(f"compare_logits: dsrun failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr}",
              file=sys.stderr)
        sys.exit(1)
    with open(out_path) as f:
        doc = json.load(f)
    if doc.get("token_ids") != ids:
        print(f"compare_logits: dsrun echoed token_ids {doc.get('token_ids')}, sent {ids}", file=sys.stderr)
        sys.exit(1)
    return doc


# --- FP8 -> bf16 copy --------------------------------------------------------------------

def weight_files(model_dir):
    """{shard file name: [tensor names]} in the order dsrt reads them (the index wins)."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        files = {}
        for name, shard in weight_map.items():
            files.setdefault(shard, []).append(name)
        return files, weight_map
    return {"model.safetensors": None}, None


def dequantize_checkpoint(src, dst, block):
    """Writes dst: src's files with every F8_E4M3 weight replaced by its bf16 dequantisation
    and the *.weight_scale_inv tensors dropped, and config.json without quantization_config."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    block_rows, block_cols = block
    os.makedirs(dst, exist_ok=True)
    files, weight_map = weight_files(src)
    handles = {}

    def tensor(name):
        shard = weight_map[name] if weight_map is not None else "model.safetensors"
        if shard not in handles:
            handles[shard] = safe_open(os.path.join(src, shard), framework="pt", device="cpu")
        return handles[shard].get_tensor(name)

    def names_in(shard):
        if shard not in handles:
            handles[shard] = safe_open(os.path.join(src, shard), framework="pt", device="cpu")
        return list(handles[shard].keys())

    converted = 0
    new_map = {}
    for shard in files:
        out = {}
        for name in names_in(shard):
            if weight_map is not None and weight_map.get(name) != shard:
                continue  # the index decides which shard a tensor comes from
            if name.endswith(".weight_scale_inv"):
                continue
            t = tensor(name)
            if t.dtype == torch.float8_e4m3fn:
                scale_name = name + "_scale_inv"
                present = scale_name in weight_map if weight_map is not None else scale_name in names_in(shard)
                if not present:
                    fail_setup(f"{name} is fp8 but {scale_name} is missing")
                s = tensor(scale_name).to(torch.float32)
                rows, cols = t.shape
                want = (math.ceil(rows / block_rows), math.ceil(cols / block_cols))
                if tuple(s.shape) != want:
                    fail_setup(f"{scale_name} has shape {tuple(s.shape)}, expected {want}")
                full = s.repeat_interleave(block_rows, 0)[:rows].repeat_interleave(block_cols, 1)[:, :cols]
                t = (t.to(torch.float32) * full).to(torch.bfloat16)
                converted += 1
            elif t.dtype == torch.float8_e5m2:
                fail_setup(f"{name}: unexpected dtype {t.dtype}")
            out[name] = t.contiguous()
            new_map[name] = shard
        save_file(out, os.path.join(dst, shard), metadata={"format": "pt"})
    if weight_map is not None:
        with open(os.path.join(src, "model.safetensors.index.json")) as f:
            index = json.load(f)
        index["weight_map"] = new_map
        index.pop("metadata", None)  # total_size changed; transformers does not need it
        with open(os.path.join(dst, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2)

    with open(os.path.join(src, "config.json")) as f:
        config = json.load(f)
    config.pop("quantization_config", None)
    config["torch_dtype"] = "bfloat16"
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    # Tokenizer and generation config: not needed for logits, copied so the copy is a model.
    for name in os.listdir(src):
        if name.endswith(".safetensors") or name in ("model.safetensors.index.json", "config.json"):
            continue
        path = os.path.join(src, name)
        if os.path.isfile(path):
            shutil.copy2(path, os.path.join(dst, name))
    return converted


# --- transformers --------------------------------------------------------------------------

def version_tuple(text):
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def load_reference(hf_dir, config, torch_dtype, device):
    import transformers
    from transformers import AutoModelForCausalLM

    version = transformers.__version__
    arch = (config.get("architectures") or ["?"])[0]
    if getattr(transformers, arch, None) is None:
        fail_setup(f"transformers {version} has no {arch}; DeepSeek-V3 needs transformers >= "
                   f"{TRANSFORMERS_MIN[0]}.{TRANSFORMERS_MIN[1]} (pip install -U transformers). "
                   "This script never runs a checkpoint's own modelling code (trust_remote_code=False).")
    if config.get("model_type") == "deepseek_v3" and version_tuple(version) < TRANSFORMERS_MIN:
        print(f"compare_logits: warning: transformers {version} may ignore rope_interleave "
              f"(added around {TRANSFORMERS_MIN[0]}.{TRANSFORMERS_MIN[1]}); differences may come from that",
              file=sys.stderr)
    # transformers 4.56 renamed torch_dtype to dtype (the old name still works, with a warning).
    dtype_key = "dtype" if version_tuple(version) >= (4, 56) else "torch_dtype"
    kwargs = {dtype_key: torch_dtype, "trust_remote_code": False, "attn_implementation": "eager",
              "output_loading_info": True}
    model, info = AutoModelForCausalLM.from_pretrained(hf_dir, **kwargs)
    missing = list(info.get("missing_keys", []))
    mismatched = list(info.get("mismatched_keys", []))
    unexpected = list(info.get("unexpected_keys", []))
    if missing or mismatched:
        fail_setup(f"transformers left weights uninitialised: missing {missing[:8]}, "
                   f"mismatched {mismatched[:8]} (the reference would be random)")
    if unexpected:
        print(f"compare_logits: note: transformers ignored {len(unexpected)} checkpoint tensors "
              f"(e.g. {unexpected[0]}; multi-token-prediction layers are expected here)", file=sys.stderr)
    model.to(device)
    model.eval()
    return model, version


def enable_bf16_kv(model):
    """Rounds what dsrt keeps in its bf16 latent cache: the kv_a_layernorm output and the
    roped key part (k_rot). The second is the k output of the RoPE helper that
    DeepseekV3Attention.forward looks up in its module at call time."""
    import torch

    def round_bf16(x):
        return x.to(torch.bfloat16).to(x.dtype)

    norms = 0
    for name, module in model.named_modules():
        if name.endswith("self_attn.kv_a_layernorm"):
            module.register_forward_hook(lambda _m, _inputs, output: round_bf16(output))
            norms += 1
    if norms == 0:
        fail_setup("--bf16-kv: no self_attn.kv_a_layernorm modules in this model")

    modeling = sys.modules.get(type(model).__module__)
    patched = 0
    for fn_name in ("apply_rotary_pos_emb_interleave", "apply_rotary_pos_emb"):
        fn = getattr(modeling, fn_name, None)
        if fn is None:
            continue

        def wrapped(q, k, *rest, _fn=fn, **kw):
            q_out, k_out = _fn(q, k, *rest, **kw)
            return q_out, round_bf16(k_out)

        setattr(modeling, fn_name, wrapped)
        patched += 1
    if patched == 0:
        fail_setup(f"--bf16-kv: {type(model).__module__} has no apply_rotary_pos_emb[_interleave] "
                   "to wrap (this transformers version differs; run without --bf16-kv)")
    return norms


def reference_logits(model, ids, device):
    import torch

    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], dtype=torch.long, device=device), use_cache=False)
    return out.logits[0].to(torch.float32).cpu()


def compare(ours, ref):
    """Statistics of dsrt's logits (ours) against the reference, both [positions, vocab]."""
    import torch

    diff = (ours - ref).abs()
    logit_range = float(ref.max() - ref.min())
    max_abs = float(diff.max())
    agree = (ours.argmax(dim=-1) == ref.argmax(dim=-1)).tolist()
    return {
        "max_abs_diff": max_abs,
        "mean_abs_diff": float(diff.mean()),
        "logit_range": logit_range,
        "relative": max_abs / logit_range if logit_range > 0 else math.inf,
        "position_max_abs_diff": [float(v) for v in diff.max(dim=-1).values],
        "argmax_agree": agree,
        "argmax_agree_count": int(sum(agree)),
        "finite": bool(torch.isfinite(ours).all() and torch.isfinite(ref).all()),
    }


def main(argv):
    args = parse_args(argv)
    model_dir = os.path.abspath(args.model)
    config_path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(config_path):
        fail_setup(f"{config_path}: no such file")
    if not (os.path.isfile(args.dsrun) and os.access(args.dsrun, os.X_OK)):
        fail_setup(f"{args.dsrun}: not an executable (build it: cmake --build build --target dsrun)")
    with open(config_path) as f:
        config = json.load(f)
    vocab_size = int(config["vocab_size"])

    try:
        import torch
        import transformers  # noqa: F401  (checked here for a clear message)
    except ImportError as e:
        fail_setup(f"needs torch and transformers ({e})")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        fail_setup("--device cuda: torch sees no GPU")
    # A true f32 reference: no TF32 tensor-core matmuls.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch_dtype = getattr(torch, args.dtype)

    temp = tempfile.mkdtemp(prefix="dsrt-hf-reference-")
    try:
        quant = config.get("quantization_config")
        hf_dir = model_dir
        converted = 0
        if quant:
            if quant.get("quant_method") != "fp8":
                fail_setup(f"quantization_config quant_method {quant.get('quant_method')!r}: only fp8 is handled")
            block = quant.get("weight_block_size") or [128, 128]
            hf_dir = os.path.join(temp, "bf16-copy")
            converted = dequantize_checkpoint(model_dir, hf_dir, block)
            print(f"compare_logits: fp8 checkpoint: dequantised {converted} weights "
                  f"({block[0]}x{block[1]} blocks) to bf16 in {hf_dir} for transformers")

        model, tf_version = load_reference(hf_dir, config, torch_dtype, device)
        if args.bf16_kv:
            layers = enable_bf16_kv(model)
            print(f"compare_logits: --bf16-kv: rounding the latent cache values of {layers} layers to bf16")

        prompts = make_prompts(args.prompts, args.prompt_tokens, vocab_size)
        results = []
        failed = []
        for i, ids in enumerate(prompts):
            doc = run_dsrun(args.dsrun, model_dir, ids, os.path.join(temp, f"dsrun-{i}.json"), args.isa)
            if doc.get("vocab_size") != vocab_size:
                fail_setup(f"dsrun reports vocab_size {doc.get('vocab_size')}, config.json {vocab_size}")
            if any(v is None for row in doc["logits"] for v in row):
                print(f"compare_logits: prompt {i}: dsrun wrote non-finite logits (null)", file=sys.stderr)
                return 1
            ours = torch.tensor(doc["logits"], dtype=torch.float32)
            ref = reference_logits(model, ids, device)
            if tuple(ours.shape) != tuple(ref.shape):
                print(f"compare_logits: prompt {i}: dsrun logits {tuple(ours.shape)} vs transformers "
                      f"{tuple(ref.shape)}", file=sys.stderr)
                return 1
            r = compare(ours, ref)
            r["prompt"] = i
            r["token_ids"] = ids
            r["pass"] = r["finite"] and r["relative"] <= args.tolerance
            results.append(r)
            worst = max(range(len(ids)), key=lambda p: r["position_max_abs_diff"][p])
            print(f"prompt {i}: {len(ids)} tokens  max|diff| {r['max_abs_diff']:.3e}  "
                  f"mean|diff| {r['mean_abs_diff']:.3e}  range {r['logit_range']:.3e}  "
                  f"max|diff|/range {r['relative']:.3e}  argmax agrees {r['argmax_agree_count']}/{len(ids)}  "
                  f"worst position {worst}  {'ok' if r['pass'] else 'FAIL'}")
            if not r["pass"]:
                why = ("non-finite logits" if not r["finite"] else
                       f"max|diff|/range {r['relative']:.3e} > tolerance {args.tolerance:.1e}")
                failed.append(f"prompt {i}: {why}")

        summary = {
            "model": model_dir,
            "fp8_dequantized_weights": converted,
            "dsrun": os.path.abspath(args.dsrun),
            "dsrun_isa": args.isa,
            "transformers_version": tf_version,
            "torch_version": torch.__version__,
            "device": device,
            "dtype": args.dtype,
            "bf16_kv": args.bf16_kv,
            "tolerance": args.tolerance,
            "pass": not failed,
            "prompts": results,
        }
        if args.json:
            with open(args.json, "w") as f:
                json.dump(summary, f, indent=2)
        if failed:
            print("compare_logits: FAIL: " + "; ".join(failed), file=sys.stderr)
            if not args.bf16_kv:
                print("compare_logits: if one position stands out, rerun with --bf16-kv --tolerance 1e-3: an MoE "
                      "routing near-tie tipped by dsrt's bf16 latent cache disappears there, a bug does not",
                      file=sys.stderr)
            return 1
        print(f"compare_logits: PASS: {len(results)} prompts within {args.tolerance:.1e} of the logit range")
        return 0
    finally:
        if args.keep_temp:
            print(f"compare_logits: kept {temp}")
        else:
            shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
