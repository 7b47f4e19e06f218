// Following an event's activity live: ask for a single-use stream ticket,
// follow the Server-Sent Events stream, and fall back to polling the feed
// when the stream cannot be had. The event page's activity feed and the door
// page's counter both follow it. ``section`` carries the event's id, the
// cursor to start after and the ticket and feed addresses as data
// attributes; ``onItem`` gets each new item once; ``show(state, text)``
// tells how the page is following ("live", "polling", ...).
export function followActivity(section, onItem, show) {
  const seen = new Set();
  let since = section.dataset.since;
  let failures = 0;
  let polls = 0;

  function add(item) {
    if (seen.has(item.id)) return;
    seen.add(item.id);
    since = item.id;
    onItem(item);
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

// Check-ins (and their undoing) carry the door's counts: people in, of
// those expected. Shown wherever the page has [data-door] cells.
export function showDoorCounts(item) {
  if (item.data && item.data.checked_in !== undefined) {
    document.querySelectorAll("[data-door]").forEach((cell) => {
      cell.textContent = item.data[cell.dataset.door];
    });
  }
}
