// A small, safe Markdown subset for message bodies, built only from createElement and
// createTextNode: no HTML string is ever parsed. What it knows: *em*, _em_, **strong**,
// `code`, ``` fenced blocks ```, "> " quotes, "- " and "1. " lists, bare http(s) URLs and
// [text](url) links to http:, https: and mailto: only. Everything else is literal text, and
// line breaks are kept (the body is shown with white-space: pre-wrap).

const URL_AT = /https?:\/\/[^\s<>"']*[^\s<>"'.,;:!?)\]*_]/iy;
const FENCE = /^ {0,3}```/;
const QUOTE = /^ {0,3}> ?/;
const BULLET = /^ {0,3}- (.*)$/;
const NUMBERED = /^ {0,3}(\d{1,9})[.)] (.*)$/;
const WORD = /[\p{L}\p{N}]/u;
const MAX_DEPTH = 8; // deeper quotes and emphasis than this are shown as they were typed

/** The message `text` as a fragment of text nodes and the allowed elements. */
export function renderMarkdown(text) {
  const fragment = document.createDocumentFragment();
  fragment.append(...blocks(text.split("\n"), 0));
  return fragment;
}

/** Lines as nodes: paragraphs are inline runs joined by "\n"; the rest are block elements. */
function blocks(lines, depth) {
  const nodes = [];
  let paragraph = [];
  const flush = () => {
    // Blank lines right next to a block element would only add height: the block has its own.
    while (paragraph.length && paragraph[0] === "" && nodes.length) paragraph.shift();
    if (paragraph.length) nodes.push(paragraphNode(paragraph, depth));
    paragraph = [];
  };
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (FENCE.test(line)) {
      const end = lines.findIndex((other, j) => j > i && FENCE.test(other));
      const stop = end === -1 ? lines.length : end;
      trimTrailingBlanks(paragraph);
      flush();
      const code = element("code", lines.slice(i + 1, stop).join("\n"));
      nodes.push(element("pre", code));
      i = stop + 1;
      continue;
    }
    const kind = depth < MAX_DEPTH ? blockKind(line) : null;
    if (!kind) {
      paragraph.push(line);
      i += 1;
      continue;
    }
    trimTrailingBlanks(paragraph);
    flush();
    let j = i;
    while (j < lines.length && blockKind(lines[j]) === kind) j += 1;
    const run = lines.slice(i, j);
    if (kind === "quote") {
      const inner = run.map((each) => each.replace(QUOTE, ""));
      nodes.push(element("blockquote", ...blocks(inner, depth + 1)));
    } else {
      nodes.push(listNode(kind, run, depth));
    }
    i = j;
  }
  flush();
  return nodes;
}

function blockKind(line) {
  if (QUOTE.test(line)) return "quote";
  if (BULLET.test(line)) return "ul";
  if (NUMBERED.test(line)) return "ol";
  return null;
}

function trimTrailingBlanks(lines) {
  while (lines.length && lines[lines.length - 1] === "") lines.pop();
}

function listNode(kind, lines, depth) {
  const list = document.createElement(kind);
  const pattern = kind === "ul" ? BULLET : NUMBERED;
  const first = lines[0].match(pattern);
  if (kind === "ol" && first[1] !== "1") list.setAttribute("start", String(Number(first[1])));
  for (const line of lines) {
    const match = line.match(pattern);
    list.append(element("li", ...inline(match[kind === "ul" ? 1 : 2], depth + 1, true)));
  }
  return list;
}

function paragraphNode(lines, depth) {
  const p = document.createElement("p");
  lines.forEach((line, index) => {
    if (index) p.append(document.createTextNode("\n"));
    p.append(...inline(line, depth, true));
  });
  return p;
}

function element(tag, ...children) {
  const node = document.createElement(tag);
  node.append(...children);
  return node;
}

/** Inline markup of one line: code spans, links, emphasis, strong; the rest as text. */
function inline(text, depth, links) {
  const nodes = [];
  let plain = "";
  const push = (node) => {
    if (plain) nodes.push(document.createTextNode(plain));
    plain = "";
    nodes.push(node);
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "`") {
      const run = text.slice(i).match(/^`+/)[0];
      const end = text.indexOf(run, i + run.length);
      if (end !== -1) {
        push(element("code", text.slice(i + run.length, end)));
        i = end + run.length;
        continue;
      }
      plain += run;
      i += run.length;
      continue;
    }
    if (links && c === "[") {
      const link = linkAt(text, i, depth);
      if (link) {
        push(link.node);
        i = link.end;
        continue;
      }
    }
    if (links && (c === "h" || c === "H") && !WORD.test(text[i - 1] || " ")) {
      URL_AT.lastIndex = i;
      const match = URL_AT.exec(text);
      const href = match && safeHref(match[0]);
      if (href) {
        push(anchor(href, [document.createTextNode(match[0])]));
        i += match[0].length;
        continue;
      }
    }
    if ((c === "*" || c === "_") && depth < MAX_DEPTH) {
      const marker = text[i + 1] === c ? c + c : c;
      const end = opens(text, i, marker) ? closerOf(text, i + marker.length, marker) : -1;
      if (end !== -1) {
        const inner = inline(text.slice(i + marker.length, end), depth + 1, links);
        push(element(marker.length === 2 ? "strong" : "em", ...inner));
        i = end + marker.length;
        continue;
      }
      plain += marker;
      i += marker.length;
      continue;
    }
    plain += c;
    i += 1;
  }
  if (plain) nodes.push(document.createTextNode(plain));
  return nodes;
}

/** A marker opens at `i` when it starts a word: not after a letter or digit, before a non-space. */
function opens(text, i, marker) {
  const after = text[i + marker.length];
  return !WORD.test(text[i - 1] || " ") && after !== undefined && !/\s/.test(after);
}

/** Where the marker closing one opened before `from` is: after a non-space, ending a word. */
function closerOf(text, from, marker) {
  for (let j = text.indexOf(marker, from + 1); j !== -1; j = text.indexOf(marker, j + 1)) {
    const before = text[j - 1];
    const after = text[j + marker.length] || " ";
    if (/\s/.test(before) || WORD.test(after)) continue;
    if (marker.length === 1 && !singleCloser(text, j, marker)) continue;
    // "***" ends an emphasis inside a strong one: the strong one closes on its last two.
    let end = j;
    while (marker.length === 2 && text[end + 2] === marker[0]) end += 1;
    return end;
  }
  return -1;
}

/** A lone "*" or "_", or the last of three (which end an emphasis and a strong one). */
function singleCloser(text, j, marker) {
  if (text[j + 1] === marker) return false;
  return text[j - 1] !== marker || (text[j - 2] === marker && text[j - 3] !== marker);
}

/** [text](url) at `i`, or null when it is not one or the address is not allowed. */
function linkAt(text, i, depth) {
  const close = text.indexOf("](", i + 1);
  if (close === -1) return null;
  const end = text.indexOf(")", close + 2);
  if (end === -1) return null;
  const label = text.slice(i + 1, close);
  const target = text.slice(close + 2, end);
  if (!label || label.includes("[") || /\s/.test(target)) return null;
  const href = safeHref(target, true);
  if (!href) return null;
  return { node: anchor(href, inline(label, depth + 1, false)), end: end + 1 };
}

function anchor(href, children) {
  const a = element("a", ...children);
  a.setAttribute("href", href);
  a.setAttribute("target", "_blank");
  a.setAttribute("rel", "noopener noreferrer nofollow");
  return a;
}

/** The address when it is absolute http(s) (or mailto, for written links), else null. */
function safeHref(text, mailto = false) {
  try {
    const url = new URL(text);
    const allowed = url.protocol === "http:" || url.protocol === "https:";
    return allowed || (mailto && url.protocol === "mailto:") ? url.href : null;
  } catch {
    return null;
  }
}
