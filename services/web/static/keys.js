// Keyboard shortcuts of the review console: a key clicks the button marked data-key="<key>".
// Keys typed into a text field stay text; Escape leaves the field.
document.addEventListener("keydown", function (event) {
  var target = event.target;
  var typing = target.matches("input, textarea, select");
  if (event.key === "Escape" && typing) { target.blur(); return; }
  if (typing || event.ctrlKey || event.metaKey || event.altKey) { return; }
  var button = document.querySelector('[data-key="' + event.key + '"]:not([disabled])');
  if (button) { event.preventDefault(); button.click(); }
});
