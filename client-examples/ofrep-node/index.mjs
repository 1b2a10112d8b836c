// Evaluates Baton's flags with the real OpenFeature web SDK and OFREP web
// provider, and prints the resolution details as one JSON object.
//
//   BATON_URL=http://127.0.0.1:8080 OFREP_KEY=<client key> \
//   OFREP_CONTEXT='{"targetingKey":"u1","client":{"platform":"android","app_version":"5.3.0"}}' \
//   node index.mjs
import { OpenFeature } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

const baseUrl = process.env.BATON_URL ?? 'http://127.0.0.1:8080';
const key = process.env.OFREP_KEY ?? '';
const context = JSON.parse(process.env.OFREP_CONTEXT ?? '{"targetingKey": "u1"}');

// Node has no localStorage and no document: no persistent cache, no polling.
const provider = (clientKey) =>
  new OFREPWebProvider({
    baseUrl,
    headers: [['Authorization', `Bearer ${clientKey}`]],
    cacheMode: 'disabled',
    pollInterval: 0,
  });

const details = (d) => ({
  value: d.value,
  variant: d.variant ?? null,
  reason: d.reason,
  errorCode: d.errorCode ?? null,
  flagMetadata: d.flagMetadata,
});

await OpenFeature.setContext(context);
await OpenFeature.setProviderAndWait('baton', provider(key));
const client = OpenFeature.getClient('baton');
const out = {
  'new-signup-screen': details(client.getBooleanDetails('new-signup-screen', true)),
  'signup-headline': details(client.getStringDetails('signup-headline', 'code default')),
  'max-signup-steps': details(client.getNumberDetails('max-signup-steps', -1)),
  'legacy-welcome-tour': details(client.getBooleanDetails('legacy-welcome-tour', true)),
  'no-such-flag': details(client.getBooleanDetails('no-such-flag', true)),
  'wrong-type': details(client.getStringDetails('max-signup-steps', 'code default')),
};

// A key the server does not accept is fatal for the provider.
try {
  await OpenFeature.setProviderAndWait('bad-key', provider('not-a-key'));
  out.badKey = 'accepted';
} catch (e) {
  out.badKey = e?.code ?? e?.name ?? String(e);
}

console.log(JSON.stringify(out));
await OpenFeature.close();
process.exit(0);
