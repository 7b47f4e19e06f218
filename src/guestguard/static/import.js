// Drop a file on the import form's zone: it fills the file input, so the
// form posts as if the file had been chosen with the button. The page works
// the same without this script.
const zone = document.querySelector("[data-drop-zone]");
if (zone) {
  const input = zone.querySelector("input[type=file]");
  const status = zone.querySelector("[data-drop-status]");
  const show = (file) => { status.textContent = file ? `Chosen: ${file.name}` : ""; };
  zone.classList.add("drop-ready");
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("drop-over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("drop-over"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    const files = event.dataTransfer && event.dataTransfer.files;
    if (!files || files.length !== 1) { status.textContent = "Drop one file."; return; }
    input.files = files;
    show(files[0]);
    zone.closest("form").requestSubmit();
  });
  input.addEventListener("change", () => show(input.files[0]));
}
