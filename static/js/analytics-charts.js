// The campaign analytics page (templates/analytics/campaign.html): draws both charts from its
// JSON block (#chart-data); without JavaScript the page's tables still carry every figure.
document.addEventListener("DOMContentLoaded", function () {
  if (!window.Chart) { return; }
  var data = JSON.parse(document.getElementById("chart-data").textContent);
  var common = { responsive: true, maintainAspectRatio: false, animation: false };
  new Chart(document.getElementById("daily-chart"), {
    type: "bar",
    data: {
      labels: data.days,
      datasets: [
        { label: "Sent", data: data.sent, borderColor: "#2563eb", backgroundColor: "#2563eb" },
        { label: "Opened", data: data.opened, borderColor: "#16a34a", backgroundColor: "#16a34a" },
        { label: "Clicked", data: data.clicked, borderColor: "#d97706", backgroundColor: "#d97706" }
      ]
    },
    options: Object.assign({ scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }, common)
  });
  new Chart(document.getElementById("funnel-chart"), {
    type: "bar",
    data: {
      labels: data.funnel.labels,
      datasets: [{ label: "Sent", data: data.funnel.sent, backgroundColor: "#2563eb" }]
    },
    options: Object.assign({ indexAxis: "y", scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } }, common)
  });
});
