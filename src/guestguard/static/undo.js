// The undo button of a removal on the event page goes when its window
// closes (the server refuses it after that anyway, saying so); the message
// stays. Without JavaScript the button stays until the next page.
for (const form of document.querySelectorAll("form[data-seconds-left]")) {
  const button = form.querySelector("button");
  const left = Number(form.dataset.secondsLeft) * 1000;
  if (button) setTimeout(() => button.remove(), Math.max(left, 0));
}
