// The event page's live activity (followed by live.js: the stream, or the
// feed polled). Without JavaScript the page still shows the latest items;
// reloading it shows newer ones.
import { followActivity, showDoorCounts } from "./live.js";

const section = document.getElementById("activity");
if (section && window.fetch) {
  follow(section);
}

function follow(section) {
  const list = section.querySelector("#activity-feed");
  const status = section.querySelector("#activity-status");
  const empty = section.querySelector("#activity-empty");
  const seen = new Set(Array.from(list.children, (item) => item.dataset.id));
  const KEEP = 100;
  // The page's own format ("Sun 22 Nov, 19:05" or "Sun 22 Nov, 7:05 pm"),
  // in the event's time zone and on its clock (timefmt.short_when).
  const twelve = section.dataset.hourCycle === "h12";
  const clock = new Intl.DateTimeFormat("en-GB", {
    timeZone: section.dataset.timezone, weekday: "short", day: "numeric", month: "short",
    hour: twelve ? "numeric" : "2-digit", minute: "2-digit", hourCycle: section.dataset.hourCycle || "h23",
  });

  function show(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function add(item) {
    if (seen.has(item.id)) return;
    seen.add(item.id);
    const entry = document.createElement("li");
    entry.className = "feed-item is-new feed-" + item.kind.replace(".", "-");
    entry.dataset.id = item.id;
    const what = document.createElement("span");
    what.className = "feed-what";
    if (item.guest_id) {
      const link = document.createElement("a");
      link.href = section.dataset.guestUrl.replace("GUEST_ID", item.guest_id);
      link.textContent = item.summary;
      what.append(link);
    } else {
      what.textContent = item.summary;
    }
    const when = document.createElement("time");
    when.className = "feed-when";
    when.dateTime = item.at;
    when.textContent = clock.format(new Date(item.at));
    entry.append(what, " ", when);
    list.prepend(entry);
    while (list.children.length > KEEP) list.lastElementChild.remove();
    empty.hidden = true;
    showDoorCounts(item);
    refresh();
  }

  // The headcount, roll-up, flags and guest rows follow the activity: read
  // them again (the page's own view with live=1), at most every 2 s, and
  // swap in what changed. A part the host is using waits until they leave it.
  const LIVE_PARTS = ["headcount", "rollup", "flag-notice", "guest-rows"];
  let refreshing = null;
  function refresh() {
    if (refreshing) return;
    refreshing = setTimeout(async () => {
      refreshing = null;
      const url = new URL(location.href);
      url.searchParams.set("live", "1");
      try {
        const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
        if (!response.ok) return;
        const fresh = document.createElement("template");
        fresh.innerHTML = await response.text();
        LIVE_PARTS.forEach((id) => swap(document.getElementById(id), fresh.content.getElementById(id)));
      } catch (error) {
        // The page stays as it was; the next activity tries again.
      }
    }, 2000);
  }

  function swap(part, fresh) {
    if (!part || !fresh || part.innerHTML === fresh.innerHTML) return;
    if (part.contains(document.activeElement)) {
      part.addEventListener("focusout", refresh, { once: true });
      return;
    }
    part.innerHTML = fresh.innerHTML;
  }

  followActivity(section, add, show);
}
