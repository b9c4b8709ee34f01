// The chat page: streams replies from /v1/chat/completions (server-sent events), shows the recommendation cards
// that come with a reply (catalog items only, with their ids), and keeps the user's profile beside the chat.
"use strict";

const history = [];
const $ = (id) => document.getElementById(id);

function headers() {
  const key = $("key").value.trim();
  return Object.assign({ "Content-Type": "application/json" }, key ? { Authorization: `Bearer ${key}` } : {});
}

function addMessage(role, text) {
  const item = document.createElement("li");
  item.className = role;
  item.textContent = text;
  $("messages").appendChild(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function showCards(items) {
  const box = $("cards");
  box.replaceChildren();
  for (const item of items) {
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.itemId = item.item_id;
    for (const [name, text] of [["title", item.title], ["why", item.why || ""], ["id", `item ${item.item_id}`]]) {
      const line = document.createElement("div");
      line.className = name;
      line.textContent = text;
      card.appendChild(line);
    }
    box.appendChild(card);
  }
}

function showProfile(profile) {
  $("profile-text").textContent = profile && profile.text ? profile.text : "No profile yet.";
  $("profile-version").textContent = profile ? `version ${profile.version}` : "";
}

async function loadProfile() {
  const user = $("user").value.trim();
  if (!user) return showProfile(null);
  const response = await fetch(`/v1/profiles/${encodeURIComponent(user)}`);
  showProfile(response.ok ? await response.json() : null);
}

async function send(message) {
  addMessage("user", message);
  history.push({ role: "user", content: message });
  const reply = addMessage("assistant", "");
  const body = { model: "llmrec", messages: history.slice(-12), stream: true, user: $("user").value.trim() || null };
  const response = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body) });
  if (!response.ok) {
    const detail = await response.json().catch(() => ({ detail: response.statusText }));
    reply.textContent = `(${response.status}) ${typeof detail.detail === "string" ? detail.detail : JSON.stringify(detail.detail)}`;
    reply.classList.add("error");
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    const events = buffer.split("\n\n");
    buffer = events.pop();
    for (const event of events) {
      const data = event.replace(/^data: /, "").trim();
      if (!data || data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      const extra = chunk.llmrec || {};
      if (extra.recommendations) showCards(extra.recommendations);
      if (extra.profile) showProfile(extra.profile);
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta.content;
      if (delta) {
        text += delta;
        reply.textContent = text;
      }
    }
  }
  history.push({ role: "assistant", content: text });
}

$("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("message").value.trim();
  if (!text) return;
  $("message").value = "";
  $("send").disabled = true;
  send(text).catch((error) => addMessage("assistant error", String(error))).finally(() => { $("send").disabled = false; });
});
$("user").addEventListener("change", loadProfile);
loadProfile();
