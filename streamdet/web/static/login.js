"use strict";
// Logs in with JSON, so a refusal (a wrong password, too many tries) is said on the page; the session
// cookie comes back HttpOnly, and the page / is opened with it.
const form = document.getElementById("login");
const message = document.getElementById("message");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  message.textContent = "";
  try {
    const response = await fetch("/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: form.elements.name.value, password: form.elements.password.value }),
      cache: "no-store",
    });
    if (response.ok) {
      location.replace("/");
      return;
    }
    const answer = await response.json().catch(() => ({}));
    message.textContent = answer.error || `HTTP ${response.status}`;
    form.elements.password.value = "";
    form.elements.password.focus();
  } catch (err) {
    message.textContent = `no answer from streamdet (${err.message})`;
  }
});
