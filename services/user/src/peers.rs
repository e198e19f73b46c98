//! User's calls to auth, which owns accounts and sessions, and how its answers map. Calls carry
//! this service's token; auth is found through discovery on each call.

use mall_common::client::{Channel, Clients};
use mall_proto::auth::v1 as auth_pb;
use mall_proto::auth::v1::auth_service_client::AuthServiceClient;
use mall_types::ServiceName;
use tonic::Code;

use crate::domain::Profile;
use crate::error::Error;

type AuthClient = AuthServiceClient<Channel>;

/// Auth, as this service calls it.
#[derive(Clone)]
pub struct Auth {
    clients: Clients,
}

impl Auth {
    /// Auth as `clients` find it.
    pub fn new(clients: Clients) -> Self {
        Auth { clients }
    }

    fn client(&self) -> Result<AuthClient, Error> {
        Ok(self.clients.client::<AuthClient>(ServiceName::Auth)?)
    }

    /// Creates an account (auth checks every field); its id and first tokens.
    pub async fn register(
        &self,
        req: auth_pb::RegisterRequest,
    ) -> Result<auth_pb::RegisterData, Error> {
        self.client()?
            .register(req)
            .await?
            .into_inner()
            .data
            .ok_or(Error::IncompleteAnswer("Register"))
    }

    /// Signs in; the session's tokens.
    pub async fn login(&self, req: auth_pb::LoginRequest) -> Result<auth_pb::LoginData, Error> {
        self.client()?
            .login(req)
            .await?
            .into_inner()
            .data
            .ok_or(Error::IncompleteAnswer("Login"))
    }

    /// Ends a session (auth verifies the tokens).
    pub async fn logout(&self, req: auth_pb::LogoutRequest) -> Result<(), Error> {
        self.client()?.logout(req).await?;
        Ok(())
    }

    /// Deletes `user_id`'s account.
    pub async fn delete_account(&self, user_id: u64) -> Result<(), Error> {
        self.client()?
            .delete_account(auth_pb::DeleteAccountReq { user_id })
            .await?;
        Ok(())
    }

    /// Changes an account's name, email or phone.
    pub async fn update_account(&self, req: auth_pb::UpdateAccountReq) -> Result<(), Error> {
        self.client()?.update_account(req).await?;
        Ok(())
    }

    /// The profile of `user_id`; `None` when auth has no such account.
    pub async fn profile(&self, user_id: u64) -> Result<Option<Profile>, Error> {
        match self
            .client()?
            .get_account(auth_pb::GetAccountReq { user_id })
            .await
        {
            Ok(account) => {
                let account = account.into_inner();
                Ok(Some(Profile {
                    user_id: account.user_id,
                    username: account.username,
                    email: account.email,
                    phone: account.phone,
                }))
            }
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(Error::from(status)),
        }
    }
}
