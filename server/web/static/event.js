"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const evidence = JSON.parse(document.getElementById("evidence-data").textContent);
  document.querySelectorAll("[data-evidence]").forEach((el) => {
    roadeye.figure(el, evidence[Number(el.dataset.evidence)]);
  });
});
