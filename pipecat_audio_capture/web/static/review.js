// Call review: play the whole call from the picture, with a cursor, or one turn at a time.
// No build step, no framework.
"use strict";

// The server has set its cookie by now: take the access token out of the address bar and history.
const address = new URL(window.location.href);
if (address.searchParams.has("token")) {
  address.searchParams.delete("token");
  window.history.replaceState(null, "", address.pathname + address.search + address.hash);
}

// The whole call, when the server can play it: the picture then carries where its plot lies
// (viewBox units), the seconds its axis spans, and where the recording starts on that axis.
const callAudio = document.getElementById("call-audio");
const picture = document.getElementById("call-timeline");
const cursor = document.getElementById("call-cursor");
const whole = callAudio instanceof HTMLAudioElement && picture instanceof SVGSVGElement;
const plot = whole
  ? {
      left: Number(picture.dataset.plotLeft),
      width: Number(picture.dataset.plotWidth),
      spanS: Number(picture.dataset.spanS),
      offsetS: Number(picture.dataset.audioOffsetS),
    }
  : null;

function play(audio) {
  audio.play().catch((error) => console.warn(`cannot play ${audio.id}: ${error}`));
}

function playCallFrom(axisS) {
  callAudio.currentTime = Math.max(0, axisS - plot.offsetS);
  showCursor();
  play(callAudio);
}

function showCursor() {
  const axisS = callAudio.currentTime + plot.offsetS;
  const x = plot.left + (Math.min(Math.max(axisS, 0), plot.spanS) / plot.spanS) * plot.width;
  cursor.setAttribute("x1", x.toFixed(2));
  cursor.setAttribute("x2", x.toFixed(2));
  cursor.classList.add("shown");
  // The turns under the cursor are the ones heard now.
  picture.querySelectorAll("[data-turn]").forEach((shape) => {
    const heard =
      !callAudio.paused &&
      Number(shape.dataset.beginS) <= axisS &&
      axisS <= Number(shape.dataset.endS);
    shape.classList.toggle("playing", heard);
  });
}

function followCursor() {
  showCursor();
  if (!callAudio.paused) {
    window.requestAnimationFrame(followCursor);
  }
}

function axisSecondsAt(event) {
  const point = new DOMPoint(event.clientX, event.clientY).matrixTransform(
    picture.getScreenCTM().inverse(),
  );
  const fraction = (point.x - plot.left) / plot.width;
  return Math.min(Math.max(fraction, 0), 1) * plot.spanS;
}

function playTurn(shape) {
  if (whole) {
    playCallFrom(Number(shape.dataset.beginS));
    return;
  }
  const audio = document.getElementById(shape.dataset.turn);
  if (!(audio instanceof HTMLAudioElement)) {
    return;
  }
  audio.scrollIntoView({ block: "center", behavior: "smooth" });
  audio.currentTime = 0;
  play(audio);
}

document.addEventListener("click", (event) => {
  if (!(event.target instanceof Element)) {
    return;
  }
  if (whole && event.target.closest("#call-timeline")) {
    playCallFrom(axisSecondsAt(event));
    return;
  }
  const shape = event.target.closest("[data-turn]");
  if (shape) {
    playTurn(shape);
  }
});

document.addEventListener("keydown", (event) => {
  const shape = event.target instanceof Element && event.target.closest("[data-turn]");
  if (shape && (event.key === "Enter" || event.key === " ")) {
    event.preventDefault();
    playTurn(shape);
  }
});

// Media events do not bubble, so these listen in the capture phase.
function markPlaying(audio, playing) {
  document
    .querySelectorAll(`[data-turn="${audio.id}"]`)
    .forEach((shape) => shape.classList.toggle("playing", playing));
  audio.closest("tr")?.classList.toggle("playing", playing);
}

document.addEventListener(
  "play",
  (event) => {
    document.querySelectorAll("audio").forEach((other) => {
      if (other !== event.target) {
        other.pause();
      }
    });
    if (whole && event.target === callAudio) {
      window.requestAnimationFrame(followCursor);
    } else {
      markPlaying(event.target, true);
    }
  },
  true,
);
for (const type of ["pause", "ended"]) {
  document.addEventListener(
    type,
    (event) => {
      if (whole && event.target === callAudio) {
        showCursor();
      } else {
        markPlaying(event.target, false);
      }
    },
    true,
  );
}
if (whole) {
  // A seek from the player's own controls moves the cursor too, playing or not.
  callAudio.addEventListener("seeked", showCursor);
}

// A turn split into parts plays them one after the other.
document.addEventListener(
  "ended",
  (event) => {
    const next = event.target.dataset?.next && document.getElementById(event.target.dataset.next);
    if (next instanceof HTMLAudioElement) {
      next.currentTime = 0;
      play(next);
    }
  },
  true,
);
