// Applies the remembered colour theme before the first paint (a classic script: the CSP allows no inline one).
(function () {
  try {
    var t = localStorage.getItem('traffix.theme');
    if (t === 'light' || t === 'dark') document.documentElement.dataset.theme = t;
  } catch (e) { /* storage disabled: follow the system */ }
})();
