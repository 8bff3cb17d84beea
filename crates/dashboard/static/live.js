// Conveyor's dashboard: live regions over Server-Sent Events, job progress from the job
// API's event stream, and forms that call the JSON API. No library, no CDN.
"use strict";

// <div data-live="/dashboard/live/overview/events">: the server sends the region's new HTML.
for (const region of document.querySelectorAll("[data-live]")) {
  const source = new EventSource(region.dataset.live + location.search);
  source.onmessage = (event) => { region.innerHTML = event.data; };
}

// <div data-job="42">: the job's state and progress, as GET /api/jobs/42/events streams them.
for (const box of document.querySelectorAll("[data-job]")) {
  const source = new EventSource(`/api/jobs/${box.dataset.job}/events`);
  const number = (n) => Number(n).toLocaleString("en-US");
  const show = (done, total, message) => {
    box.querySelector("[data-progress]").hidden = false;
    const bar = box.querySelector("progress");
    const text = box.querySelector("[data-progress-text]");
    if (total) { bar.max = total; bar.value = done; } else { bar.removeAttribute("value"); }
    const percent = total ? Math.round((100 * done) / total) : null;
    text.textContent = percent === null ? number(done) : `${percent} % (${number(done)} of ${number(total)})` + (message ? ` ${message}` : "");
  };
  source.addEventListener("progress", (event) => {
    const p = JSON.parse(event.data);
    if (p) { show(p.done, p.total, p.message); }
  });
  source.addEventListener("state", (event) => {
    const job = JSON.parse(event.data);
    const state = box.querySelector("[data-state]");
    state.textContent = job.state;
    state.className = `state state-${job.state}`;
    if (job.progress) { show(job.progress.done, job.progress.total, job.progress.message); }
    // Buttons that fit the state: Cancel while it has not ended; Retry once it has (or
    // "Run now" while it waits).
    const ended = ["completed", "failed", "cancelled"].includes(job.state);
    for (const form of box.querySelectorAll("form[data-when]")) {
      form.hidden = form.dataset.when === "active" ? ended
        : !(ended || ["available", "scheduled", "retryable"].includes(job.state));
      if (form.dataset.when === "retryable") { form.querySelector("button").textContent = ended ? "Retry" : "Run now"; }
    }
    const error = document.querySelector("[data-error]");
    if (error && job.error) { error.textContent = job.error; error.closest("section").hidden = false; }
    if (ended) {
      source.close();
      // The time line follows too: ended just now, after this long.
      const finished = box.querySelector("[data-finished]");
      if (finished) { finished.textContent = "just now"; }
      const ran = box.querySelector("[data-duration]");
      if (ran && job.started_at && job.finished_at) {
        const ms = Date.parse(job.finished_at) - Date.parse(job.started_at);
        ran.textContent = ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
      }
      const result = document.querySelector("[data-result]");
      if (result && job.result !== undefined && job.result !== null) {
        result.textContent = JSON.stringify(job.result, null, 2);
        result.closest("section").hidden = false;
      }
    }
  });
}

// <form data-api="/api/..." data-method="POST">: fields become a JSON body (numbers for
// type=number, booleans for checkboxes, JSON for data-json textareas, a list of lines for
// data-lines textareas; empty fields are left out; data-number makes a hidden field a
// number; a dotted name, settings.min_stars, nests an object); the answer shows in the form's
// .notice, data-then="/jobs/{id}" follows it, data-reload reloads the page.
// Delegated, so forms that arrive in a live region's update work too.
document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-api]");
    if (!form) { return; }
    event.preventDefault();
    const body = {};
    const put = (name, value) => {
      const path = name.split(".");
      const last = path.pop();
      let into = body;
      for (const key of path) { into = into[key] ??= {}; }
      into[last] = value;
    };
    for (const field of form.querySelectorAll("input[name], select[name], textarea[name]")) {
      if (field.type === "checkbox") { put(field.name, field.checked); continue; }
      if (field.dataset.lines !== undefined) {
        put(field.name, field.value.split("\n").map((l) => l.trim()).filter((l) => l !== ""));
        continue;
      }
      if (field.value === "") { continue; }
      if (field.type === "number" || field.dataset.number !== undefined) { put(field.name, Number(field.value)); }
      else if (field.dataset.json !== undefined) {
        try { put(field.name, JSON.parse(field.value)); } catch (e) { return note(form, `${field.name}: not JSON (${e.message})`, true); }
      } else { put(field.name, field.value); }
    }
    // Fields named in the URL ({queue}) go in the path, not the body.
    const url = form.dataset.api.replace(/\{(\w+)\}/g, (_, key) => {
      const value = encodeURIComponent(body[key] ?? "");
      delete body[key];
      return value;
    });
    const method = form.dataset.method || "POST";
    // data-confirm-count="Retry {n} jobs?": count first (dry_run), then ask.
    if (form.dataset.confirmCount !== undefined) {
      const counted = await fetch(url, { method, headers: { "content-type": "application/json" },
        body: JSON.stringify({ ...body, dry_run: true }) });
      const count = await counted.json().catch(() => null);
      if (!counted.ok) { return note(form, (count && count.detail) || `${counted.status}`, true); }
      if (!confirm(form.dataset.confirmCount.replace("{n}", count.matched))) { return; }
    }
    const init = { method, headers: { "content-type": "application/json" } };
    if (method !== "GET" && form.dataset.nobody === undefined) { init.body = JSON.stringify(body); }
    const response = await fetch(url, init);
    const text = await response.text();
    let answer = null;
    try { answer = JSON.parse(text); } catch (e) { answer = null; }
    if (!response.ok) { return note(form, (answer && answer.detail) || `${response.status} ${text}`, true); }
    if (form.dataset.reload !== undefined) { location.reload(); return; }
    if (form.dataset.then && answer) {
      const target = form.dataset.then.replace(/\{([\w.]+)\}/g, (_, path) => path.split(".").reduce((v, k) => (v == null ? v : v[k]), answer));
      location.assign(target);
      return;
    }
    const shown = form.dataset.show ? `${form.dataset.show}: ${JSON.stringify(answer && answer[form.dataset.show])}` : null;
    note(form, shown || form.dataset.done || "done", false);
});

// Inside a live region the next update would wipe a note: those go to the page's #notice.
function note(form, text, bad) {
  let box = form.closest("[data-live]") ? document.getElementById("notice") : form.querySelector(".notice");
  if (!box) { box = document.createElement("p"); box.className = "notice"; box.setAttribute("role", "status"); form.append(box); }
  box.textContent = text;
  box.classList.toggle("error", bad);
}
