// A real OpenID Connect provider for the tests: panva/oidc-provider (OpenID Certified) on loopback HTTPS.
// Configuration comes from one JSON file (argv[2]): port, issuer, TLS key and certificate, one client and
// the accounts file, which is read at every sign-in so that a test can change someone's roles.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

const provider = new Provider(config.issuer, {
  clients: [{
    client_id: config.client_id,
    client_secret: config.client_secret,
    redirect_uris: [config.redirect_uri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
  }],
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'name', 'roles'],
  },
  findAccount(ctx, id) {
    const accounts = JSON.parse(readFileSync(config.accounts, 'utf8'));
    const claims = accounts[id];
    if (!claims) return undefined;
    return { accountId: id, claims: () => ({ sub: id, ...claims }) };
  },
});

https.createServer({ key: readFileSync(config.key), cert: readFileSync(config.cert) }, provider.callback())
  .listen(config.port, '127.0.0.1', () => console.log(`listening ${config.issuer}`));
