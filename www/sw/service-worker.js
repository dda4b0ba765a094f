// The page's service worker: it keeps this build of the page, its wasm and the shipped models in a
// cache, so the page loads and trains with no network once it has loaded once. The build prepends
// `VERSION` (a hash of every file) and `FILES` (every file of the build): a new build is a new
// cache, and the old one is deleted when the new worker takes over.
/* global VERSION, FILES */
const CACHE = `tinyrlhf-${VERSION}`;
const scope = self.registration.scope;

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(FILES.map((f) => new URL(f, scope).href)))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((n) => n.startsWith('tinyrlhf-') && n !== CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

// Cross-origin isolation for hosts that cannot send its headers (the workers sharing a real model's
// base need a SharedArrayBuffer): every response this worker hands the page carries them.
function isolated(response) {
  if (!response || response.status === 0 || response.headers.get('Cross-Origin-Embedder-Policy')) return response;
  const headers = new Headers(response.headers);
  headers.set('Cross-Origin-Opener-Policy', 'same-origin');
  headers.set('Cross-Origin-Embedder-Policy', 'require-corp');
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET' || !request.url.startsWith(scope)) return;
  if (request.mode === 'navigate') {
    // The page itself: the network's when there is one (a new build shows at once), else this build's.
    event.respondWith(fetch(request).catch(() => caches.open(CACHE).then((c) => c.match(new URL('index.html', scope).href)).then((r) => r ?? Response.error())).then(isolated));
    return;
  }
  // Everything else belongs to this build: from the cache, from the network only if missing.
  // (Servers answer `Vary: Origin`; a module script's request has an Origin the cached one lacks.)
  event.respondWith(caches.open(CACHE).then((c) => c.match(request, { ignoreSearch: true, ignoreVary: true })).then((r) => r ?? fetch(request)).then(isolated));
});
