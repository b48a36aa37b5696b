// The example's single-page app: no build step, no framework. It talks to allauth headless's
// "browser" API and to the site's own API (example/api.py, django-ninja), both with the session
// cookie; django-cloudsync answers JSON, never a redirect, when CloudSync access is missing.
"use strict";

const HEADLESS = "/_allauth/browser/v1";
const WORKSPACES = "/api/v2/workspaces";
const HERE = "/spa/";

const $ = (id) => document.getElementById(id);

function csrfToken() {
  const cookie = document.cookie.split("; ").find((part) => part.startsWith("csrftoken="));
  return cookie ? decodeURIComponent(cookie.slice("csrftoken=".length)) : "";
}

// allauth's provider redirect wants a real form post (the browser leaves for CloudSync's consent).
function postForm(url, fields) {
  const form = document.createElement("form");
  form.method = "POST";
  form.action = url;
  for (const [name, value] of Object.entries({ ...fields, csrfmiddlewaretoken: csrfToken() })) {
    const input = document.createElement("input");
    input.type = "hidden";
    input.name = name;
    input.value = value;
    form.append(input);
  }
  document.body.append(form);
  form.submit();
}

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  return { response, body: await response.json() };
}

function showSignedOut() {
  $("status").textContent = "You are signed out.";
  $("sign-in-box").hidden = false;
  $("signed-in").hidden = true;
  $("sign-out").hidden = true;
}

async function showWorkspaces() {
  const { response, body } = await getJSON(WORKSPACES);
  const list = $("workspaces");
  list.replaceChildren();
  if (response.ok) {
    for (const name of body.workspaces) {
      const item = document.createElement("li");
      item.textContent = name;
      list.append(item);
    }
    $("error").hidden = true;
    $("reconnect-box").hidden = true;
    return;
  }
  // django-cloudsync's answer: a stable code, the scopes involved, and the flow that fixes it.
  const error = body.errors[0];
  $("error").textContent = error.message;
  $("error").dataset.code = error.code;
  $("error").hidden = false;
  const flow = ((body.data && body.data.flows) || []).find((candidate) => candidate.id === "provider_redirect");
  if (flow) {
    $("reconnect-box").hidden = false;
    $("reconnect").onclick = () => postForm(flow.url, { ...flow.fields, callback_url: HERE });
  }
}

async function start() {
  $("sign-in").onclick = () =>
    postForm(`${HEADLESS}/auth/provider/redirect`, { provider: "cloudsync", process: "login", callback_url: HERE });
  $("sign-out").onclick = async () => {
    await fetch(`${HEADLESS}/auth/session`, { method: "DELETE", headers: { "X-CSRFToken": csrfToken() } });
    showSignedOut();
  };
  const { response, body } = await getJSON(`${HEADLESS}/auth/session`);
  if (response.status !== 200) {
    showSignedOut();
    return;
  }
  const user = body.data.user;
  $("status").textContent = `Signed in as ${user.display || user.email || user.username}.`;
  $("sign-in-box").hidden = true;
  $("signed-in").hidden = false;
  $("sign-out").hidden = false;
  await showWorkspaces();
}

start();
