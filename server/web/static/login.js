"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("login-form");
  const err = document.getElementById("login-error");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.textContent = "";
    try {
      await roadeye.api("POST", "/api/auth/login", {
        username: document.getElementById("username").value.trim(),
        password: document.getElementById("password").value });
      const next = new URLSearchParams(location.search).get("next");
      location.href = next && next.startsWith("/") && !next.startsWith("//") ? next : "/";
    } catch (ex) {
      err.textContent = ex.message || "Login failed";
      document.getElementById("password").select();
    }
  });
});
