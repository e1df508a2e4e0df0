// Chat templates: Jinja templates from tokenizer_config.json, rendered by @huggingface/jinja (the
// renderer transformers.js uses), with ChatML as the built-in default.
//
// Which characters belong to assistant turns comes from the template's {% generation %} ...
// {% endgeneration %} blocks, the convention transformers uses for return_assistant_tokens_mask.
// The renderer itself ignores those tags, so before rendering they become marker characters
// (Unicode noncharacters, which never occur in text), whose positions mark the spans.
// A template without generation blocks marks each assistant message's content and the special
// token(s) that directly follow it (the end-of-turn token SFT must learn to emit).
import { Template } from '@huggingface/jinja';
import { ArgumentError } from '../errors.js';
import { TokenizerFormatError } from './errors.js';

export interface ChatMessage {
  role: string;
  content: string;
  [key: string]: unknown;
}

export interface ChatTemplateOptions {
  /** Template source; default: the tokenizer's chat_template, else ChatML. */
  template?: string;
  /** Append the prompt for the assistant's next turn. */
  add_generation_prompt?: boolean;
  [key: string]: unknown;
}

/** ChatML, with the assistant's content and end-of-turn token inside a generation block. */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}" +
  "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}" +
  "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const GEN_START = '\ufdd0';
const GEN_END = '\ufdd1';
const MSG_START = '\ufdd2';
const MSG_END = '\ufdd3';
const MARKERS = /[\ufdd0-\ufdd3]/;

function compile(source: string): Template {
  try {
    return new Template(source);
  } catch (e) {
    throw new TokenizerFormatError(`the chat template does not parse: ${(e as Error).message}`);
  }
}

/** Renders messages; returns the text and the [start, end) spans of assistant output in it. */
export function renderChat(
  template: string,
  messages: ChatMessage[],
  context: Record<string, unknown>,
): { text: string; spans: [number, number][]; generationBlocks: boolean } {
  if (!Array.isArray(messages)) throw new ArgumentError('chat messages must be an array of {role, content}');
  for (const m of messages) {
    if (typeof m?.role !== 'string' || typeof m?.content !== 'string') {
      throw new ArgumentError(`every chat message needs a string role and content, got ${JSON.stringify(m)}`);
    }
    if (MARKERS.test(m.content)) throw new ArgumentError('chat message content contains the reserved characters U+FDD0..U+FDD3');
  }
  const hasGeneration = /{%-?\s*generation\s*-?%}/.test(template);
  let source = template;
  let msgs = messages;
  if (hasGeneration) {
    source = template.replace(/{%(-?)\s*(end)?generation\s*(-?)%}/g, (_m, l: string, end: string | undefined, r: string) =>
      `{{${l} '${end ? GEN_END : GEN_START}' ${r}}}`,
    );
  } else {
    msgs = messages.map((m) => (m.role === 'assistant' ? { ...m, content: MSG_START + m.content + MSG_END } : m));
  }
  let raw: string;
  try {
    raw = compile(source).render({ ...context, messages: msgs });
  } catch (e) {
    if (e instanceof TokenizerFormatError) throw e;
    throw new TokenizerFormatError(`the chat template failed to render: ${(e as Error).message}`);
  }
  let text = '';
  const spans: [number, number][] = [];
  let open = -1;
  let last = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c !== GEN_START && c !== GEN_END && c !== MSG_START && c !== MSG_END) continue;
    text += raw.slice(last, i);
    last = i + 1;
    if (c === GEN_START || c === MSG_START) open = text.length;
    else if (open >= 0) {
      spans.push([open, text.length]);
      open = -1;
    }
  }
  text += raw.slice(last);
  return { text, spans, generationBlocks: hasGeneration };
}
