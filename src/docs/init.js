// Renders /openapi.json (the one source) with Swagger UI, served from this Worker's assets.
// "Authorize" takes an access token (from POST /api/v1/auth/login) or a tnt_ API key; every
// "Try it out" call then carries it as `Authorization: Bearer …`. Nothing is stored.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  docExpansion: "list",
  defaultModelsExpandDepth: 0,
  displayRequestDuration: true,
  filter: true,
  persistAuthorization: false,
  showExtensions: false,
  // No third-party validator badge: the page makes no request beyond this origin.
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
