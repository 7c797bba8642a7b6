// orchestrate dashboard: live updates over Server-Sent Events, actions as POSTs.
// No framework, nothing fetched from elsewhere.
"use strict";

(function () {
  const body = document.body;
  const page = body.dataset.page;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const conn = document.getElementById("conn");

  function showConn(down) {
    if (!conn) return;
    conn.hidden = !down;
    body.classList.toggle("offline", down);
  }

  // A stream that says when it is cut ("reconnecting") and when it is back. The browser
  // reconnects by itself and sends the last id it saw (Last-Event-ID).
  function stream(url, handlers) {
    const source = new EventSource(url);
    source.addEventListener("open", () => showConn(false));
    source.addEventListener("error", () => showConn(true));
    source.addEventListener("store", (e) => showConn(JSON.parse(e.data) !== "ok"));
    for (const [name, fn] of Object.entries(handlers)) {
      source.addEventListener(name, (e) => {
        showConn(false);
        fn(JSON.parse(e.data));
      });
    }
    window.addEventListener("pagehide", () => source.close());
    return source;
  }

  function setBadge(el, status) {
    if (!el) return;
    el.className = el.className.replace(/\bst-\S+/g, "").trim() + " st-" + status;
    el.textContent = status;
  }

  // Actions: a button with data-post; the answer's error (if any) shown beside it.
  for (const button of document.querySelectorAll("button[data-post]")) {
    button.addEventListener("click", async () => {
      const question = button.dataset.confirm;
      if (question && !window.confirm(question)) return;
      const out = document.getElementById("action-result");
      button.disabled = true;
      if (out) out.textContent = "…";
      try {
        const res = await fetch(button.dataset.post, {
          method: "POST",
          headers: { "X-CSRF-Token": csrf },
          credentials: "same-origin",
        });
        const data = await res.json();
        if (out) out.textContent = res.ok ? (data.status || "done") : data.error || res.statusText;
        if (!res.ok) button.disabled = false;
      } catch (err) {
        if (out) out.textContent = String(err);
        button.disabled = false;
      }
    });
  }

  if (page === "runs") {
    const runs = document.getElementById("runs");
    stream("/stream", {
      runs(data) {
        runs.innerHTML = data.html;
      },
    });
  }

  if (page === "run") {
    const run = body.dataset.run;
    const board = document.getElementById("board");
    const events = document.getElementById("events");
    stream("/runs/" + encodeURIComponent(run) + "/stream", {
      board(data) {
        board.innerHTML = data.html;
        for (const [team, status] of Object.entries(data.status)) {
          const node = document.getElementById("node-" + team);
          if (node) node.setAttribute("class", node.getAttribute("class").replace(/\bst-\S+/, "st-" + status));
        }
        setBadge(document.getElementById("run-status"), data.run.status);
        document.getElementById("run-reason").textContent = data.run.reason;
        const cancel = document.getElementById("cancel-run");
        if (cancel && data.run.done) cancel.disabled = true;
      },
      line(data) {
        const cell = board.querySelector('[data-last="' + CSS.escape(data.team) + '"]');
        const row = cell && cell.closest("tr");
        if (cell && row && ["running", "verifying", "retrying"].includes(row.dataset.status)) {
          cell.textContent = data.t;
        }
      },
      event(data) {
        const li = document.createElement("li");
        li.textContent = data.t;
        events.prepend(li);
        while (events.children.length > 200) events.lastChild.remove();
      },
    });
  }

  if (page === "team") {
    const run = body.dataset.run;
    const team = body.dataset.team;
    const log = document.getElementById("log");
    const search = document.getElementById("log-search");
    const attempt = document.getElementById("log-attempt");
    const follow = document.getElementById("log-follow");
    const count = document.getElementById("log-count");
    let lastAttempt = null;
    for (const ln of log.querySelectorAll(".ln:not(.mark)")) lastAttempt = ln.dataset.a;

    function visible(ln) {
      const a = attempt.value;
      if (a && ln.dataset.a !== a) return false;
      const q = search.value.trim().toLowerCase();
      if (!q) return true;
      return !ln.classList.contains("mark") && ln.textContent.toLowerCase().includes(q);
    }
    let shown = 0;
    let total = 0;
    function showCount() {
      count.textContent = search.value || attempt.value ? shown + " of " + total + " lines" : total + " lines";
    }
    function filter() {
      shown = 0;
      total = 0;
      for (const ln of log.children) {
        const on = visible(ln);
        ln.hidden = !on;
        if (!ln.classList.contains("mark")) {
          total += 1;
          if (on) shown += 1;
        }
      }
      showCount();
    }
    function scroll() {
      if (follow.checked) log.scrollTop = log.scrollHeight;
    }
    function add(cls, a, text) {
      const div = document.createElement("div");
      div.className = cls;
      div.dataset.a = String(a);
      div.textContent = text;
      div.hidden = !visible(div);
      log.appendChild(div);
      return div;
    }
    search.addEventListener("input", filter);
    attempt.addEventListener("change", filter);
    follow.addEventListener("change", scroll);
    log.addEventListener("scroll", () => {
      follow.checked = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    });
    filter();
    scroll();

    let detailBusy = false;
    async function refreshDetail() {
      if (detailBusy) return;
      detailBusy = true;
      try {
        const res = await fetch("/runs/" + encodeURIComponent(run) + "/teams/" + encodeURIComponent(team) + "/detail");
        if (res.ok) document.getElementById("detail").innerHTML = await res.text();
      } finally {
        detailBusy = false;
      }
    }

    const base = "/runs/" + encodeURIComponent(run) + "/teams/" + encodeURIComponent(team) + "/stream";
    stream(base + "?from=" + encodeURIComponent(body.dataset.position), {
      line(data) {
        const a = String(data.a);
        if (lastAttempt !== null && a !== lastAttempt) add("ln mark", a, "── attempt " + a + " ──");
        lastAttempt = a;
        if (![...attempt.options].some((o) => o.value === a)) {
          const o = document.createElement("option");
          o.value = a;
          o.textContent = "attempt " + a;
          attempt.appendChild(o);
        }
        const div = add("ln", a, data.t);
        total += 1;
        if (!div.hidden) shown += 1;
        showCount();
        scroll();
      },
      note(data) {
        add("ln mark", lastAttempt || "", data.t);
        scroll();
      },
      team(data) {
        setBadge(document.getElementById("team-status"), data.status);
        document.getElementById("team-attempt").textContent = data.attempt;
        const quiet = ["running", "succeeded", "pending"].includes(data.status);
        document.getElementById("team-reason").textContent = quiet ? "" : data.reason;
        document.getElementById("cancel-team").disabled = !["pending", "running", "verifying", "retrying"].includes(data.status);
        document.getElementById("retry-team").disabled = data.status !== "failed";
        refreshDetail();
      },
    });
  }
})();
