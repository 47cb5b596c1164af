// Niceties only: drag and drop onto the upload boxes and a preview of the chosen photos.
// Every form works without this script.
"use strict";

function showPreviews(zone, input) {
  const previews = zone.querySelector("[data-previews]");
  previews.replaceChildren();
  for (const file of input.files) {
    if (!file.type.startsWith("image/")) continue;
    const img = document.createElement("img");
    img.alt = file.name; // set as a property: never parsed as HTML
    img.src = URL.createObjectURL(file);
    img.addEventListener("load", () => URL.revokeObjectURL(img.src), { once: true });
    previews.append(img);
  }
}

function wireDropzone(zone) {
  const input = zone.querySelector("input[type=file]");
  input.addEventListener("change", () => showPreviews(zone, input));
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    if (!event.dataTransfer || event.dataTransfer.files.length === 0) return;
    input.files = event.dataTransfer.files;
    showPreviews(zone, input);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-dropzone]").forEach(wireDropzone);
});
