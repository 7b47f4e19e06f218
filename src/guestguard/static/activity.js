// The event page's live activity: ask for a single-use stream ticket, follow
// the Server-Sent Events stream, and fall back to polling the feed when the
// stream cannot be had. Without JavaScript the page still shows the latest
// items; reloading it shows newer ones.
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
  let since = section.dataset.since;
  let failures = 0;
  let polls = 0;
  // The page's own format ("Sun 22 Nov, 19:05"), in the event's time zone.
  const clock = new Intl.DateTimeFormat("en-GB", {
    timeZone: section.dataset.timezone, weekday: "short", day: "numeric", month: "short",
    hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  });

  function show(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function add(item) {
    if (seen.has(item.id)) return;
    seen.add(item.id);
    since = item.id;
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
    // Check-ins carry the door's counts: people in, of those expected.
    if (item.data && item.data.checked_in !== undefined) {
      document.querySelectorAll("[data-door]").forEach((cell) => {
        cell.textContent = item.data[cell.dataset.door];
      });
    }
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

  async function ticket() {
    const response = await fetch(section.dataset.ticketUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ event_id: section.dataset.eventId }),
    });
    if (!response.ok) throw new Error("no ticket: " + response.status);
    return (await response.json()).stream_url;
  }

  async function connect() {
    if (!window.EventSource) return poll();
    let url;
    try {
      url = await ticket();
    } catch (error) {
      return retry();
    }
    const source = new EventSource(url + "&last_event_id=" + encodeURIComponent(since));
    let opened = false;
    source.addEventListener("open", () => {
      opened = true;
      failures = 0;
      show("live", "Live");
    });
    source.addEventListener("activity", (message) => add(JSON.parse(message.data)));
    // The stream's time is up: a new ticket checks access again.
    source.addEventListener("reconnect", () => {
      source.close();
      connect();
    });
    // The holder signed out or lost access to the event: nothing to follow.
    source.addEventListener("ended", () => {
      source.close();
      show("ended", "Live updates stopped: sign in again to follow this event.");
    });
    source.addEventListener("reload", () => {
      show("behind", "Much happened while disconnected: reload the page to see all of it.");
    });
    // A used ticket cannot reconnect by itself: get a new one. A stream
    // refused before it opened (the server holds as many as it may) is not a
    // lost connection: the page polls the feed, and tries a stream later.
    source.addEventListener("error", () => {
      source.close();
      if (opened) retry();
      else poll();
    });
  }

  function retry() {
    failures += 1;
    if (failures > 3) return poll();
    show("reconnecting", "Reconnecting…");
    setTimeout(connect, 1500 * failures);
  }

  async function poll() {
    show("polling", "Updating every 15 seconds");
    try {
      let more = true;
      let lookback = 10; // an item committed late sorts behind newer ones
      while (more) {
        const url = section.dataset.feedUrl + "?limit=100&lookback=" + lookback + "&after=" + encodeURIComponent(since);
        lookback = 0;
        const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (!response.ok) break;
        const body = await response.json();
        body.items.forEach(add);
        since = body.next || since;
        more = body.more;
      }
    } catch (error) {
      show("polling", "Offline: retrying every 15 seconds");
    }
    polls += 1;
    // Every few minutes, try the stream again.
    if (polls % 20 === 0) {
      failures = 0;
      setTimeout(connect, 15000);
    } else {
      setTimeout(poll, 15000);
    }
  }

  connect();
}
