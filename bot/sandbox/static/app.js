// The sandbox page. Plain JavaScript, no build step. Everything the bot sends is rendered from
// Telegram's text + entities with DOM calls (never innerHTML), so no message can inject markup.
"use strict";

const I18N = {
  zh: {
    sandbox: "沙盒", clock_label: "沙盒时间", plus_hour: "⏩ +1 小时", plus_day: "⏩ +1 天", reset: "↺ 重置",
    plus_title: "让机器人的时钟前进：提醒、超时催办、再次邀评会按时触发",
    reset_title: "清空一切，重新开始一个幸福里社区",
    act_as: "你现在是", chats: "聊天", people_hint: "点一下就能换一个人。",
    secretary: "书记", resident: "居民", member: "党员", bot: "机器人",
    private_chat: "邻里 · 私聊", private_sub: "与机器人的私聊", members_n: "{n} 位成员",
    send: "发送", attach_title: "发送图片或文件",
    ph_resident_group: "输入消息，例如 /demand 3号楼电梯坏了",
    ph_member_group: "输入消息，例如 /help",
    ph_private: "输入消息或命令，例如 /help",
    reply_to: "回复 {name}：", attached: "附件：{name}（可在输入框写说明）",
    edited: "已编辑", pinned: "置顶", photo: "[图片]", document: "[文件] {name}",
    joined: "{name} 加入了群聊", added: "{by} 把 {names} 拉进了群聊", left: "{name} 离开了群聊",
    pinned_line: "{by} 置顶了：{text}", service: "（系统消息）",
    starting: "沙盒正在启动：正在载入机器人（机器繁忙时可能要几十秒）……", seeding: "正在布置幸福里社区：王书记建群、绑定群组、邀请居民和党员……",
    resetting: "正在重置：清空聊天，重新开始……",
    reset_confirm: "重置沙盒？所有聊天和数据都会清空，重新开始一个幸福里社区。",
    moved: "时间前进了 {d}", hours: "{n} 小时", days: "{n} 天",
    offline: "与沙盒的连接断开了，正在重连……", ok: "好的", failed: "没有成功：{e}",
    reply_title: "回复这条消息",
  },
  en: {
    sandbox: "sandbox", clock_label: "Sandbox time", plus_hour: "⏩ +1 h", plus_day: "⏩ +1 d", reset: "↺ Reset",
    plus_title: "Move the bot's clock forward: reminders, SLA alerts and re-asks fire on time",
    reset_title: "Wipe everything and start a fresh 幸福里 community",
    act_as: "You are", chats: "Chats", people_hint: "One click switches to another person.",
    secretary: "Secretary", resident: "Resident", member: "Member", bot: "bot",
    private_chat: "Linli · private", private_sub: "private chat with the bot", members_n: "{n} members",
    send: "Send", attach_title: "Send a photo or a file",
    ph_resident_group: "Message, e.g. /demand The lift in building 3 is broken",
    ph_member_group: "Message, e.g. /help",
    ph_private: "Message or command, e.g. /help",
    reply_to: "Reply to {name}: ", attached: "Attached: {name} (type a caption if you like)",
    edited: "edited", pinned: "Pinned", photo: "[photo]", document: "[file] {name}",
    joined: "{name} joined the group", added: "{by} added {names}", left: "{name} left the group",
    pinned_line: "{by} pinned: {text}", service: "(service message)",
    starting: "The sandbox is starting: loading the bot (this can take half a minute on a busy machine)…",
    seeding: "Setting up 幸福里: the secretary binds the groups, residents and members join…",
    resetting: "Resetting: clearing the chats and starting afresh…",
    reset_confirm: "Reset the sandbox? Every chat and all data are wiped and a fresh 幸福里 community starts.",
    moved: "The clock moved forward by {d}", hours: "{n} h", days: "{n} d",
    offline: "Lost the connection to the sandbox, reconnecting…", ok: "OK", failed: "That did not work: {e}",
    reply_title: "Reply to this message",
  },
};

const S = {
  state: null, // the server's state (people, chats, messages by chat id, pins, ...)
  loading: true,
  buffered: [],
  me: null, // the person the visitor acts as
  chatOf: {}, // person id -> chat id they chose to look at
  seenFrom: false, // whether the set-up history has been marked as read
  seen: {}, // "person:chat" -> highest message_id seen
  reply: null, // message replied to
  file: null,
  lang: localStorage.getItem("linli-sandbox-lang") === "en" ? "en" : "zh",
  online: true,
};

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
};
const t = (key, params = {}) =>
  (I18N[S.lang][key] ?? key).replace(/\{(\w+)\}/g, (_, k) => String(params[k] ?? ""));

// ------------------------------------------------------------------ data helpers

const people = () => (S.state ? S.state.people : []);
const person = (id) => people().find((p) => p.id === id);
const chat = (id) => (S.state ? S.state.chats.find((c) => c.id === id) : undefined);
const messagesOf = (cid) => (S.state && S.state.messages[String(cid)]) || [];
const isPrivate = (cid) => cid > 0;
const botId = () => (S.state ? S.state.bot.id : 0);
const roleOf = (userId) => (userId === botId() ? "bot" : (person(userId) || {}).role || "resident");

function chatsOf(p) {
  // The person's groups, then their private chat with the bot (which exists once they write to it).
  return [...(p.chats || []).filter((cid) => cid < 0 && chat(cid)), p.id];
}

function memberOf(p, cid) {
  return (p.chats || []).includes(cid);
}

function chatTitle(cid) {
  if (isPrivate(cid)) return t("private_chat");
  const c = chat(cid);
  return c ? c.title : String(cid);
}

function unread(pid, cid) {
  const seen = S.seen[`${pid}:${cid}`] || 0;
  return messagesOf(cid).filter((m) => m.message_id > seen && m.from && m.from.id !== pid).length;
}

function markSeen(pid, cid) {
  const msgs = messagesOf(cid);
  S.seen[`${pid}:${cid}`] = msgs.length ? msgs[msgs.length - 1].message_id : 0;
}

function excerpt(m, n = 60) {
  let s = m.text ?? m.caption ?? "";
  if (!s && m.photo) s = t("photo");
  if (!s && m.document) s = t("document", { name: m.document.file_name || "" });
  s = s.replace(/\s+/g, " ");
  return s.length > n ? s.slice(0, n) + "…" : s;
}

// ------------------------------------------------------------------ time

function fmt(dateMs, opts) {
  return new Intl.DateTimeFormat(S.lang === "zh" ? "zh-CN" : "en-GB", {
    timeZone: S.state ? S.state.timezone : undefined, ...opts,
  }).format(new Date(dateMs));
}
const sandboxNow = () => Date.now() + (S.state ? S.state.offset_ms : 0);
const timeOf = (unix) => fmt(unix * 1000, { hour: "2-digit", minute: "2-digit", hour12: false });
const dayOf = (unix) => fmt(unix * 1000, { month: "long", day: "numeric", weekday: "short" });

function renderClock() {
  if (!S.state) return;
  const parts = {};
  const f = new Intl.DateTimeFormat(S.lang === "zh" ? "zh-CN" : "en-GB", {
    timeZone: S.state.timezone, year: "numeric", month: "2-digit", day: "2-digit", weekday: "short",
    hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  });
  for (const p of f.formatToParts(new Date(sandboxNow()))) parts[p.type] = p.value;
  $("clock").textContent = `${parts.year}-${parts.month}-${parts.day} ${parts.weekday} ${parts.hour}:${parts.minute}`;
  const off = Math.round(S.state.offset_ms / 60000); // minutes
  $("offset").textContent = off > 0 ? "(+" + spanText(off) + ")" : "";
}

function spanText(minutes) {
  const d = Math.floor(minutes / 1440);
  const h = Math.round((minutes % 1440) / 60);
  const parts = [];
  if (d) parts.push(t("days", { n: d }));
  if (h || !d) parts.push(t("hours", { n: h }));
  return parts.join(" ");
}

// ------------------------------------------------------------------ rendering text and entities

function linkify(parent, text) {
  // Telegram makes /commands and URLs in plain text clickable; so does the page.
  const re = /(^|[\s(（，。：:,])(\/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]+)?)(?![A-Za-z0-9_])|(https?:\/\/[^\s<>"'，。）)]+)/g;
  let last = 0;
  let m;
  while ((m = re.exec(text)) !== null) {
    if (m[2]) {
      const start = m.index + m[1].length;
      parent.append(text.slice(last, start));
      const cmd = el("span", "cmd", m[2]);
      cmd.addEventListener("click", () => sendText(m[2].split("@")[0]));
      parent.append(cmd);
      last = start + m[2].length;
    } else {
      parent.append(text.slice(last, m.index));
      parent.append(link(m[3], m[3]));
      last = m.index + m[3].length;
    }
  }
  parent.append(text.slice(last));
}

function deepLinkPayload(href) {
  const m = /^(?:https?:\/\/)?t\.me\/([A-Za-z0-9_]+)\?start=([A-Za-z0-9_-]{1,64})$/.exec(href);
  if (m && S.state && m[1].toLowerCase() === S.state.bot.username.toLowerCase()) return m[2];
  return null;
}

function link(href, label) {
  const payload = deepLinkPayload(href);
  if (payload !== null) {
    // The bot's own t.me deep link: the person "opens" it, which sends /start <payload> privately.
    const a = el("a", "", label);
    a.href = "#";
    a.title = href;
    a.addEventListener("click", (e) => { e.preventDefault(); startPayload(payload); });
    return a;
  }
  if (/^tg:\/\/user\?id=\d+$/.test(href)) return el("span", "mention", label);
  if (!/^(https?:|mailto:)/i.test(href)) return el("span", "", label);
  const a = el("a", "", label);
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  return a;
}

function entityElement(e, text) {
  switch (e.type) {
    case "bold": return el("b");
    case "italic": return el("i");
    case "underline": return el("u");
    case "strikethrough": return el("s");
    case "code": return el("code");
    case "pre": return el("pre");
    case "blockquote": case "expandable_blockquote": return el("blockquote");
    case "spoiler": {
      const s = el("span", "spoiler");
      s.addEventListener("click", () => s.classList.add("shown"));
      return s;
    }
    case "text_link": return link(e.url, "");
    case "text_mention": case "mention": return el("span", "mention");
    default: return el("span");
  }
}

function renderEntities(parent, text, entities, start, end) {
  // Entities come outer-first (sorted by offset, then longest); Telegram's HTML nests them properly.
  let pos = start;
  let i = 0;
  while (i < entities.length) {
    const e = entities[i];
    const eEnd = Math.min(e.offset + e.length, end);
    if (e.offset > pos) plain(parent, text.slice(pos, e.offset));
    const inner = [];
    let j = i + 1;
    while (j < entities.length && entities[j].offset < eEnd) inner.push(entities[j++]);
    const node = entityElement(e, text);
    const from = Math.max(e.offset, pos);
    if (["code", "pre", "text_link"].includes(e.type)) node.append(text.slice(from, eEnd));
    else renderEntities(node, text, inner, from, eEnd);
    parent.append(node);
    pos = Math.max(pos, eEnd);
    i = j;
  }
  if (pos < end) plain(parent, text.slice(pos, end));
}

function plain(parent, s) {
  linkify(parent, s);
}

function richText(text, entities) {
  const div = el("div", "text");
  const ents = (entities || []).filter((e) => e.type !== "bot_command" && e.type !== "url");
  ents.sort((a, b) => a.offset - b.offset || b.length - a.length);
  renderEntities(div, text, ents, 0, text.length);
  return div;
}

// ------------------------------------------------------------------ rendering messages

function serviceLine(m) {
  const name = (u) => u.first_name;
  if (m.new_chat_members) {
    const names = m.new_chat_members.map(name).join("、");
    const self = m.new_chat_members.length === 1 && m.new_chat_members[0].id === m.from.id;
    return self ? t("joined", { name: names }) : t("added", { by: name(m.from), names });
  }
  if (m.left_chat_member) return t("left", { name: name(m.left_chat_member) });
  if (m.pinned_message) return t("pinned_line", { by: name(m.from), text: excerpt(m.pinned_message, 40) });
  return t("service");
}

function isService(m) {
  return !("text" in m) && !m.photo && !m.document && !("caption" in m);
}

function messageNode(m, cid) {
  if (isService(m)) {
    const s = el("div", "service", serviceLine(m));
    s.dataset.mid = m.message_id;
    return s;
  }
  const fromId = m.from ? m.from.id : 0;
  const out = fromId === S.me;
  const box = el("div", "msg " + (out ? "out" : "in"));
  box.dataset.mid = m.message_id;
  box.dataset.from = fromId;
  const line = el("div", "line");
  const stack = el("div", "stack");
  const bubble = el("div", "bubble");
  stack.append(bubble);
  line.append(stack);
  box.append(line);
  if (!out && (!isPrivate(cid) || fromId === botId())) {
    const role = roleOf(fromId);
    const sender = el("div", "sender " + role, m.from.first_name);
    if (role === "bot") sender.append(el("span", "bottag", t("bot")));
    else if (!isPrivate(cid)) sender.append(el("span", "bottag", t(role)));
    bubble.append(sender);
  }
  if (m.reply_to_message) {
    const q = el("div", "quote");
    q.append(el("b", "", m.reply_to_message.from ? m.reply_to_message.from.first_name : ""));
    q.append(excerpt(m.reply_to_message, 80));
    q.addEventListener("click", () => flash(m.reply_to_message.message_id));
    bubble.append(q);
  }
  if (m.photo && m.photo.length) {
    const fid = m.photo[m.photo.length - 1].file_id;
    const img = el("img", "photo");
    img.src = "/sandbox/file/" + encodeURIComponent(fid);
    img.alt = m.caption || t("photo");
    img.addEventListener("click", () => window.open(img.src, "_blank", "noopener"));
    img.addEventListener("load", () => stickToBottom());
    bubble.append(img);
  }
  if (m.document) {
    const a = el("a", "doc");
    a.href = "/sandbox/file/" + encodeURIComponent(m.document.file_id) + "?download=1";
    a.download = m.document.file_name || "file";
    a.append(el("span", "icon", "📄"));
    const info = el("span");
    info.append(el("div", "fname", m.document.file_name || "file"));
    info.append(el("div", "fsize", sizeText(m.document.file_size || 0)));
    a.append(info);
    bubble.append(a);
  }
  const text = m.text ?? m.caption;
  if (text) bubble.append(richText(text, m.entities ?? m.caption_entities));
  const meta = el("div", "meta", (m.edit_date ? t("edited") + " · " : "") + timeOf(m.date));
  bubble.append(meta);
  const rows = (m.reply_markup && m.reply_markup.inline_keyboard) || [];
  if (rows.length) {
    const kb = el("div", "kb");
    for (const row of rows) {
      const r = el("div", "row");
      for (const b of row) r.append(buttonNode(b, m, cid));
      kb.append(r);
    }
    stack.append(kb);
  }
  const rb = el("button", "reply-btn", "↩");
  rb.type = "button";
  rb.title = t("reply_title");
  rb.addEventListener("click", () => setReply(m));
  line.append(rb);
  return box;
}

function buttonNode(b, m, cid) {
  if (b.url) return link(b.url, b.text);
  const btn = el("button", "", b.text);
  btn.type = "button";
  if (b.callback_data === undefined) {
    btn.disabled = true;
    return btn;
  }
  btn.addEventListener("click", () => press(btn, cid, m.message_id, b.callback_data));
  return btn;
}

function sizeText(n) {
  if (n < 1024) return n + " B";
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KB";
  return (n / 1024 / 1024).toFixed(1) + " MB";
}

// ------------------------------------------------------------------ rendering the page

function applyI18n() {
  document.documentElement.lang = S.lang === "zh" ? "zh-CN" : "en";
  for (const n of document.querySelectorAll("[data-i18n]")) n.textContent = t(n.dataset.i18n);
  for (const n of document.querySelectorAll("[data-i18n-title]")) n.title = t(n.dataset.i18nTitle);
  $("ui-lang").textContent = S.lang === "zh" ? "EN" : "中文";
  $("ui-lang").title = S.lang === "zh" ? "Page in English (the bot's language: /lang en)" : "页面切换为中文（机器人语言：/lang zh）";
}

function renderBanner() {
  const phase = S.state ? S.state.phase : "starting";
  const b = $("banner");
  let text = "";
  if (!S.online) text = t("offline");
  else if (phase !== "ready") text = t(phase === "resetting" ? "resetting" : phase === "seeding" ? "seeding" : "starting");
  b.hidden = !text;
  b.textContent = text;
  const ready = S.online && phase === "ready";
  for (const id of ["send", "plus-hour", "plus-day", "text"]) $(id).disabled = !ready;
  $("reset").disabled = !S.online || phase !== "ready";
}

function renderPeople() {
  const ul = $("people");
  ul.replaceChildren();
  for (const p of people()) {
    const li = el("li", "person" + (p.id === S.me ? " active" : ""));
    li.dataset.user = p.id;
    li.append(el("span", "avatar " + p.role, p.name.slice(0, 1)));
    const who = el("div", "who");
    who.append(el("div", "name", p.name));
    who.append(el("div", "sub", t(p.role) + " · @" + p.username));
    li.append(who);
    const n = chatsOf(p).reduce((sum, cid) => sum + unread(p.id, cid), 0);
    if (n && p.id !== S.me) li.append(el("span", "badge", String(n)));
    li.addEventListener("click", () => selectPerson(p.id));
    ul.append(li);
  }
}

function renderChats() {
  const ul = $("chats");
  ul.replaceChildren();
  const p = person(S.me);
  if (!p) return;
  for (const cid of chatsOf(p)) {
    const li = el("li", "chatitem" + (cid === current() ? " active" : ""));
    li.dataset.chat = cid;
    li.append(el("span", "avatar " + (isPrivate(cid) ? "bot" : "group"), isPrivate(cid) ? "邻" : chatTitle(cid).slice(0, 1)));
    const who = el("div", "who");
    who.append(el("div", "name", chatTitle(cid)));
    const msgs = messagesOf(cid);
    who.append(el("div", "sub", msgs.length ? excerptForList(msgs[msgs.length - 1]) : isPrivate(cid) ? t("private_sub") : ""));
    li.append(who);
    const n = cid === current() ? 0 : unread(S.me, cid);
    if (n) li.append(el("span", "badge", String(n)));
    li.addEventListener("click", () => selectChat(cid));
    ul.append(li);
  }
}

function excerptForList(m) {
  if (isService(m)) return serviceLine(m);
  const who = m.from && m.from.id !== S.me ? m.from.first_name + ": " : "";
  return who + excerpt(m, 40);
}

function renderChat() {
  const cid = current();
  $("chat-title").textContent = chatTitle(cid);
  const sub = isPrivate(cid)
    ? t("private_sub")
    : t("members_n", { n: people().filter((p) => memberOf(p, cid)).length + 1 });
  $("chat-sub").textContent = sub;
  const box = $("messages");
  box.replaceChildren();
  let lastDay = "";
  for (const m of messagesOf(cid)) {
    const day = dayOf(m.date);
    if (day !== lastDay) {
      box.append(el("div", "day", day));
      lastDay = day;
    }
    box.append(messageNode(m, cid));
  }
  renderPinned();
  const c = chat(cid);
  const kind = isPrivate(cid) ? "ph_private" : c && /党|member/i.test(c.title) ? "ph_member_group" : "ph_resident_group";
  $("text").placeholder = t(kind);
  markSeen(S.me, cid);
  stickToBottom(true);
}

function renderPinned() {
  const cid = current();
  const pins = (S.state.pins && S.state.pins[String(cid)]) || [];
  const btn = $("pinned");
  const msg = pins.length ? messagesOf(cid).find((m) => m.message_id === pins[pins.length - 1]) : null;
  btn.hidden = !msg;
  if (!msg) return;
  btn.replaceChildren(el("b", "", "📌 " + t("pinned")), excerpt(msg, 90));
  btn.onclick = () => flash(msg.message_id);
}

function renderAll() {
  applyI18n();
  renderBanner();
  renderClock();
  if (!S.state) return;
  if (!person(S.me)) S.me = (people().find((p) => p.role === "resident") || people()[0] || {}).id;
  if (S.me === undefined) return;
  if (!chatsOf(person(S.me)).includes(S.chatOf[S.me])) delete S.chatOf[S.me];
  renderPeople();
  renderChats();
  renderChat();
  renderReply();
}

function current() {
  // The chat the visitor chose for this person, else the one they would most likely look at.
  const p = person(S.me);
  if (S.chatOf[S.me] !== undefined) return S.chatOf[S.me];
  if (p.role === "secretary") return p.id; // alerts and the Accept button come privately
  return chatsOf(p).find((c) => c < 0) ?? p.id;
}

function markAllSeen() {
  for (const p of people()) for (const cid of chatsOf(p)) markSeen(p.id, cid);
}

// Whether the visitor is reading the newest messages; kept up to date on scroll, so a message that
// arrives (or an image that loads) keeps the view at the bottom however tall it is.
let atBottom = true;

function stickToBottom(force) {
  const box = $("messages");
  if (force || atBottom) {
    box.scrollTop = box.scrollHeight;
    atBottom = true;
  }
}

function flash(mid) {
  const node = $("messages").querySelector(`[data-mid="${mid}"]`);
  if (!node) return;
  node.scrollIntoView({ block: "center" });
  node.classList.add("flash");
  setTimeout(() => node.classList.remove("flash"), 1200);
}

// ------------------------------------------------------------------ live events

function onEvent(ev) {
  if (S.loading) {
    S.buffered.push(ev);
    return;
  }
  if (ev.seq <= S.state.seq) return;
  S.state.seq = ev.seq;
  switch (ev.t) {
    case "msg": return upsertMessage(ev.chat_id, ev.message);
    case "del": return deleteMessage(ev.chat_id, ev.message_id);
    case "pins":
      S.state.pins[String(ev.chat_id)] = ev.pins;
      if (ev.chat_id === current()) renderPinned();
      return;
    case "answer": return onAnswer(ev);
    case "clock":
      S.state.offset_ms = ev.offset_ms;
      renderClock();
      return;
    case "state": return loadState();
    default:
  }
}

function upsertMessage(cid, m) {
  const key = String(cid);
  const list = S.state.messages[key] || (S.state.messages[key] = []);
  const i = list.findIndex((x) => x.message_id === m.message_id);
  if (i >= 0) list[i] = m;
  else list.push(m);
  if (!S.state.chats.some((c) => c.id === cid)) S.state.chats.push(m.chat);
  if (cid > 0) { // a private chat that just began
    const p = person(cid);
    if (p && !p.chats.includes(cid)) p.chats.push(cid);
  }
  if (cid === current()) {
    const box = $("messages");
    const old = box.querySelector(`[data-mid="${m.message_id}"]`);
    const node = messageNode(m, cid);
    if (old) {
      old.replaceWith(node);
      stickToBottom();
    } else {
      const msgs = messagesOf(cid);
      const prev = msgs.length > 1 ? msgs[msgs.length - 2] : null;
      if (!prev || dayOf(prev.date) !== dayOf(m.date)) box.append(el("div", "day", dayOf(m.date)));
      box.append(node);
      stickToBottom(m.from && m.from.id === S.me);
    }
    markSeen(S.me, cid);
    renderPinned();
  }
  renderPeople();
  renderChats();
}

function deleteMessage(cid, mid) {
  const list = S.state.messages[String(cid)] || [];
  S.state.messages[String(cid)] = list.filter((m) => m.message_id !== mid);
  if (cid === current()) renderChat();
  renderChats();
}

const pendingPresses = new Map(); // callback query id -> button

function onAnswer(ev) {
  const btn = pendingPresses.get(ev.qid);
  if (btn) {
    btn.classList.remove("busy");
    pendingPresses.delete(ev.qid);
  }
  if (ev.user_id !== S.me || !ev.text) return;
  toast(ev.text, ev.alert ? "alert" : "");
}

async function loadState() {
  S.loading = true;
  try {
    const r = await fetch("/sandbox/state", { cache: "no-store" });
    S.state = await r.json();
  } catch (e) {
    S.loading = false;
    return;
  }
  S.loading = false;
  if (S.state.phase === "resetting") { // (perhaps from another tab) what was read or chosen is gone
    S.chatOf = {};
    S.seen = {};
    S.seenFrom = false;
  }
  const later = S.buffered.filter((ev) => ev.seq > S.state.seq);
  S.buffered = [];
  if (S.state.ready && !S.seenFrom) {
    markAllSeen(); // the set-up history is not news
    S.seenFrom = true;
  }
  renderAll();
  for (const ev of later) onEvent(ev);
}

function connect() {
  const es = new EventSource("/sandbox/events");
  es.onopen = () => {
    S.online = true;
    loadState();
  };
  es.onmessage = (e) => onEvent(JSON.parse(e.data));
  es.onerror = () => {
    S.online = false;
    renderBanner();
  };
}

// ------------------------------------------------------------------ actions

async function post(url, body) {
  const opts = body instanceof FormData
    ? { method: "POST", body }
    : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  let r;
  try {
    r = await fetch(url, opts);
  } catch (e) {
    toast(t("failed", { e: String(e) }), "error");
    return null;
  }
  const data = await r.json().catch(() => ({}));
  if (!r.ok || data.ok === false) {
    toast(t("failed", { e: data.error || r.status }), "error");
    return null;
  }
  return data;
}

async function sendText(text, chatId) {
  const cid = chatId ?? current();
  const body = { user_id: S.me, chat_id: cid, text };
  if (S.reply && chatId === undefined) body.reply_to = S.reply.message_id;
  setReply(null);
  return post("/sandbox/send", body);
}

function startPayload(payload) {
  S.chatOf[S.me] = S.me;
  renderAll();
  sendText("/start " + payload, S.me);
}

async function submit(e) {
  if (e) e.preventDefault();
  const box = $("text");
  const text = box.value.trim();
  if (S.file) {
    const fd = new FormData();
    fd.append("user_id", S.me);
    fd.append("chat_id", current());
    fd.append("caption", text);
    if (S.reply) fd.append("reply_to", S.reply.message_id);
    fd.append("file", S.file, S.file.name);
    setFile(null);
    setReply(null);
    box.value = "";
    autosize();
    await post("/sandbox/upload", fd);
    return;
  }
  if (!text) return;
  box.value = "";
  autosize();
  await sendText(text);
  box.focus();
}

async function press(btn, cid, mid, data) {
  btn.classList.add("busy");
  const res = await post("/sandbox/press", { user_id: S.me, chat_id: cid, message_id: mid, data });
  if (!res) {
    btn.classList.remove("busy");
    return;
  }
  pendingPresses.set(res.qid, btn);
  setTimeout(() => btn.classList.remove("busy"), 10000); // Telegram's spinner gives up too
}

function setReply(m) {
  S.reply = m;
  renderReply();
  if (m) $("text").focus();
}

function renderReply() {
  const bar = $("replybar");
  bar.hidden = !S.reply;
  if (S.reply) $("reply-text").textContent = t("reply_to", { name: S.reply.from.first_name }) + excerpt(S.reply, 50);
}

function setFile(f) {
  S.file = f;
  $("attachbar").hidden = !f;
  if (f) $("attach-text").textContent = t("attached", { name: f.name });
  $("file").value = "";
}

function selectPerson(pid) {
  if (pid !== S.me) $("toasts").replaceChildren(); // a button's answer is for the one who pressed it
  S.me = pid;
  setReply(null);
  setFile(null);
  renderAll();
}

function selectChat(cid) {
  S.chatOf[S.me] = cid;
  setReply(null);
  renderAll();
}

function toast(text, kind = "") {
  const node = el("div", "toast " + kind, text);
  $("toasts").append(node);
  if (kind === "alert") {
    const ok = el("button", "", t("ok"));
    ok.type = "button";
    ok.addEventListener("click", () => node.remove());
    node.append(ok);
    setTimeout(() => node.remove(), 15000);
  } else {
    setTimeout(() => node.remove(), 3500);
  }
}

async function advance(seconds) {
  const res = await post("/sandbox/clock", { seconds });
  if (res) toast(t("moved", { d: spanText(Math.round(seconds / 60)) }));
}

async function reset() {
  if (!window.confirm(t("reset_confirm"))) return;
  S.chatOf = {};
  S.seen = {};
  S.seenFrom = false;
  await post("/sandbox/reset", {});
}

function autosize() {
  const box = $("text");
  box.style.height = "auto";
  box.style.height = Math.min(box.scrollHeight + 2, 140) + "px";
}

function init() {
  $("composer").addEventListener("submit", submit);
  $("text").addEventListener("keydown", (e) => {
    // Enter sends; Shift+Enter is a new line; Enter that confirms an IME (Chinese input) does neither.
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      submit();
    }
  });
  $("text").addEventListener("input", autosize);
  $("messages").addEventListener("scroll", () => {
    const box = $("messages");
    atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  });
  $("file").addEventListener("change", (e) => setFile(e.target.files[0] || null));
  $("reply-cancel").addEventListener("click", () => setReply(null));
  $("attach-cancel").addEventListener("click", () => setFile(null));
  $("plus-hour").addEventListener("click", () => advance(3600));
  $("plus-day").addEventListener("click", () => advance(86400));
  $("reset").addEventListener("click", reset);
  $("ui-lang").addEventListener("click", () => {
    S.lang = S.lang === "zh" ? "en" : "zh";
    localStorage.setItem("linli-sandbox-lang", S.lang);
    renderAll();
  });
  setInterval(renderClock, 5000);
  applyI18n();
  renderBanner();
  connect();
}

init();
