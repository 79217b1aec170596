// Review queue keys (one decision per keystroke) and live ladder logs; no framework, no network.
(function () {
  const form = document.getElementById("review");
  if (form) {
    const labels = (form.dataset.labels || "").split("|").filter(Boolean);
    const send = (action, label) => {
      form.querySelector("input[name=action]").value = action;
      form.querySelector("input[name=label]").value = label || "";
      form.submit();
    };
    document.addEventListener("keydown", (e) => {
      if (e.target.tagName === "TEXTAREA" || e.target.tagName === "INPUT" || e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === "a" && document.getElementById("suggested")) send("accept");
      else if (e.key === "k") send("keep");
      else if (e.key === "d") send("drop");
      else if (e.key === "s") send("skip");
      else if (e.key === "e" && form.elements.text) form.elements.text.focus();
      else if (/^[1-9]$/.test(e.key) && labels[Number(e.key) - 1]) send("label", labels[Number(e.key) - 1]);
      else return;
      e.preventDefault();
    });
    // A button click carries its own action; put the label of a label button in the form too.
    form.addEventListener("click", (e) => {
      const b = e.target.closest("button[data-label]");
      if (b) form.querySelector("input[name=label]").value = b.dataset.label;
    });
  }
  const log = document.getElementById("log");
  if (log && log.dataset.events) {
    const source = new EventSource(log.dataset.events);
    let first = true;
    source.onmessage = (e) => {
      if (first) { log.textContent = ""; first = false; }
      log.textContent += JSON.parse(e.data).line + "\n";
      log.scrollTop = log.scrollHeight;
    };
    source.addEventListener("end", (e) => {
      source.close();
      const d = JSON.parse(e.data);
      document.getElementById("state").textContent = d.state;
      setTimeout(() => location.reload(), 500);  // the finished (or partial) report is embedded
    });
  }
})();
