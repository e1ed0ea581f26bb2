// Call review: play a turn from the picture, one turn at a time. No build step, no framework.
"use strict";

// The server has set its cookie by now: take the access token out of the address bar and history.
const address = new URL(window.location.href);
if (address.searchParams.has("token")) {
  address.searchParams.delete("token");
  window.history.replaceState(null, "", address.pathname + address.search + address.hash);
}

function playTurn(shape) {
  const audio = document.getElementById(shape.dataset.turn);
  if (!(audio instanceof HTMLAudioElement)) {
    return;
  }
  audio.scrollIntoView({ block: "center", behavior: "smooth" });
  audio.currentTime = 0;
  audio.play().catch((error) => console.warn(`cannot play ${audio.id}: ${error}`));
}

document.addEventListener("click", (event) => {
  const shape = event.target instanceof Element && event.target.closest("[data-turn]");
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
    markPlaying(event.target, true);
  },
  true,
);
for (const type of ["pause", "ended"]) {
  document.addEventListener(type, (event) => markPlaying(event.target, false), true);
}
