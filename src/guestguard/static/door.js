// The door page's camera: read a pass's QR code and send it as the typed
// code would be sent. The browser's BarcodeDetector reads frames where it
// exists; elsewhere a frame every ~0.7 s goes to the server, which decodes
// it. Without a camera or JavaScript the page's forms do everything.
// The counter follows every door's check-ins live (live.js).
import { followActivity, showDoorCounts } from "./live.js";

const counter = document.getElementById("door-counts");
if (counter && window.fetch) {
  const status = document.getElementById("door-live");
  followActivity(counter, showDoorCounts, (state, text) => {
    status.dataset.state = state;
    status.textContent = state === "live" ? "live" : text;
  });
}

const section = document.getElementById("door-scan");
const start = document.getElementById("door-camera-start");
if (section && start && navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
  start.hidden = false;
  start.addEventListener("click", () => scan(section).catch((error) => say("The camera could not start: " + error.message)));
}

function say(text) {
  document.getElementById("door-camera-status").textContent = text;
}

async function scan(section) {
  const box = document.getElementById("door-camera");
  const video = document.getElementById("door-video");
  const form = document.getElementById("door-code-form");
  const field = document.getElementById("door-code");
  box.hidden = false;
  start.hidden = true;
  const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
  video.srcObject = stream;
  await video.play();
  say("Hold the QR code in front of the camera.");
  let detector = null;
  if ("BarcodeDetector" in window) {
    try {
      const formats = await window.BarcodeDetector.getSupportedFormats();
      if (formats.includes("qr_code")) detector = new window.BarcodeDetector({ formats: ["qr_code"] });
    } catch (error) {
      detector = null;
    }
  }
  const canvas = document.createElement("canvas");
  let done = false;

  function found(code) {
    done = true;
    stream.getTracks().forEach((track) => track.stop());
    say("Pass read: checking in…");
    field.value = code;
    form.submit();
  }

  async function onServer() {
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    if (!canvas.width) return null;
    canvas.getContext("2d").drawImage(video, 0, 0);
    const response = await fetch(section.dataset.decodeUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": section.dataset.csrf },
      body: JSON.stringify({ image: canvas.toDataURL("image/jpeg", 0.8) }),
    });
    if (!response.ok) return null;
    return (await response.json()).code;
  }

  async function tick() {
    if (done) return;
    try {
      let code = null;
      if (detector) {
        const codes = await detector.detect(video);
        code = codes.length ? codes[0].rawValue : null;
      } else {
        code = await onServer();
      }
      if (code) return found(code);
    } catch (error) {
      say("Still looking for a QR code…");
    }
    setTimeout(tick, detector ? 200 : 700);
  }
  tick();
}
