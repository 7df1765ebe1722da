// Admin forms: <form data-api=URL> posts its fields as JSON; <button data-post=URL> posts
// data-body (after an optional confirm()); both reload the page on success.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("form[data-api]").forEach((form) => form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = {};
    new FormData(form).forEach((v, k) => { if (String(v).trim() !== "") body[k] = String(v).trim(); });
    const err = form.querySelector(".form-error");
    err.textContent = "";
    try {
      await roadeye.api(form.dataset.method || "POST", form.dataset.api, body);
      location.reload();
    } catch (ex) { err.textContent = ex.message; }
  }));
  document.querySelectorAll("button[data-post]").forEach((b) => b.addEventListener("click", async () => {
    if (b.dataset.confirm && !window.confirm(b.dataset.confirm)) return;
    try {
      await roadeye.api("POST", b.dataset.post, b.dataset.body ? JSON.parse(b.dataset.body) : undefined);
      location.reload();
    } catch (ex) { roadeye.toast(ex.message, "error", 6000); }
  }));
});
