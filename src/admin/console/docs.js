// Swagger UI for /openapi.json (vendored swagger-ui-dist, see vendor/VERSIONS.md). A token the
// console's sign-in stored in this tab is handed to Swagger UI, so "Try it out" calls carry it.
'use strict';

window.addEventListener('DOMContentLoaded', () => {
  const token = sessionStorage.getItem('trino-edge.console.token') || '';
  const ui = window.SwaggerUIBundle({
    url: '/openapi.json',
    dom_id: '#swagger',
    deepLinking: true,
    validatorUrl: null,
    defaultModelsExpandDepth: 0,
    docExpansion: 'list',
  });
  const note = document.getElementById('docs-auth');
  if (token) {
    ui.preauthorizeApiKey('bearer', token);
    note.textContent = 'Calls carry the console’s token';
  } else {
    note.textContent = 'Not signed in: use Authorize to send a token';
  }
});
