import { useEffect, useMemo, useState } from "react";
import { apiBaseUrl, createApi, type Api } from "./api/client";
import { forgetToken, identityOf, storedToken, storeToken, tokenFromHash, type Identity } from "./auth";
import { PostbacksPage } from "./PostbacksPage";
import { SignIn } from "./SignIn";

export function App() {
  const [baseUrl, setBaseUrl] = useState<string | null>(null);
  const [identity, setIdentity] = useState<Identity | null>(() => {
    const fromHash = tokenFromHash();
    if (fromHash) storeToken(fromHash);
    const token = fromHash ?? storedToken();
    return token ? identityOf(token) : null;
  });
  const [signInError, setSignInError] = useState<string | null>(null);

  useEffect(() => {
    void apiBaseUrl().then(setBaseUrl);
  }, []);

  const signIn = (token: string) => {
    const found = identityOf(token);
    if (!found) {
      setSignInError("That is not a Postbacks access token (a JWT with a role claim).");
      return;
    }
    storeToken(found.token);
    setSignInError(null);
    setIdentity(found);
  };
  const signOut = (reason?: string) => {
    forgetToken();
    setIdentity(null);
    setSignInError(reason ?? null);
  };

  const api: Api | null = useMemo(
    () => (identity && baseUrl !== null ? createApi(baseUrl, identity.token) : null),
    [identity, baseUrl],
  );

  if (!identity) return <SignIn onSignIn={signIn} error={signInError} />;
  if (api === null) {
    return (
      <p className="page-status" role="status">
        Loading…
      </p>
    );
  }
  return <PostbacksPage api={api} identity={identity} onSignOut={signOut} />;
}
