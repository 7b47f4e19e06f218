// A new event's time zone starts as the browser's own (the page filled in
// the workspace's latest, for browsers without script): most hosts plan
// where they are. A zone the host typed, or one the list does not know, is
// left as it is.
const input = document.querySelector("input[data-browser-zone]");
const own = window.Intl && Intl.DateTimeFormat().resolvedOptions().timeZone;
const list = input && input.list;
if (input && own && list && Array.from(list.options).some((option) => option.value === own)) {
  input.value = own;
}
