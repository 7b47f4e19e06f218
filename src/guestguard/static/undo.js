// An undo offer on the event page goes away when its window closes: the
// server refuses it after that anyway, with a message saying so. Without
// JavaScript the offer stays until the next page.
for (const form of document.querySelectorAll("form[data-seconds-left]")) {
  const left = Number(form.dataset.secondsLeft) * 1000;
  setTimeout(() => form.remove(), Math.max(left, 0));
}
