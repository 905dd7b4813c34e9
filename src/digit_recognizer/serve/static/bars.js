// One probability bar per class: label, bar, percentage; the most likely class highlighted.

function barItem(label) {
  const li = document.createElement("li");
  li.innerHTML = '<span class="label"></span><span class="track"><span class="fill"></span></span>' +
                 '<span class="value"></span>';
  li.querySelector(".label").textContent = label;
  return li;
}

// Fill `list` (an <ol>) with a bar per label; `probabilities` null empties the bars.
export function fillBars(list, labels, probabilities, top) {
  if (list.children.length !== labels.length ||
      [...list.children].some((li, i) => li.querySelector(".label").textContent !== labels[i])) {
    list.replaceChildren(...labels.map(barItem));
    // one label column for all rows, as wide as the longest label ("not a digit" included)
    const longest = Math.max(...labels.map((label) => String(label).length));
    list.style.setProperty("--label-width", `${Math.max(1.5, 0.5 * longest + 0.3)}rem`);
  }
  for (let i = 0; i < labels.length; i++) {
    const p = probabilities ? probabilities[i] : 0;
    const item = list.children[i];
    item.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    item.querySelector(".value").textContent = probabilities ? `${(100 * p).toFixed(1)}%` : "";
    item.classList.toggle("top", Boolean(probabilities) && i === top);
  }
}
