//! Nobody reads evidence without a login or an API key: the API answers 401, the dashboard sends
//! the browser to the login form, and the login form refuses wrong passwords and forged CSRF tokens.

use reqwest::StatusCode;

use crate::support::{Login, Quickstart, Session, http_client, location};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_api_refuse_anonymous() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let quickstart = Quickstart::start(&tmp.path().join("data"), None).await;
    let base = quickstart.dashboard.clone();
    let client = http_client();

    for resource in ["alerts", "observations"] {
        let url = format!("{base}/api/v1/{resource}");
        let anonymous = client.get(&url).send().await.expect("GET without token");
        assert_eq!(
            anonymous.status(),
            StatusCode::UNAUTHORIZED,
            "{resource} without a token"
        );

        for bogus in ["sak_not-a-real-key", "sak_", "", "not even the right shape"] {
            let response = client
                .get(&url)
                .header(reqwest::header::AUTHORIZATION, format!("Bearer {bogus}"))
                .send()
                .await
                .expect("GET with a bogus token");
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{resource} with bearer {bogus:?}"
            );
        }

        let basic = client
            .get(&url)
            .basic_auth("admin", Some("admin"))
            .send()
            .await
            .expect("GET with basic auth");
        assert_eq!(
            basic.status(),
            StatusCode::UNAUTHORIZED,
            "{resource} with basic auth"
        );
    }

    let dashboard = client
        .get(format!("{base}/"))
        .send()
        .await
        .expect("GET / anonymously");
    assert_eq!(
        dashboard.status(),
        StatusCode::SEE_OTHER,
        "GET / without a session"
    );
    assert_eq!(location(&dashboard), "/login");

    let forged_session = client
        .get(format!("{base}/"))
        .header(reqwest::header::COOKIE, "shadowai_session=forged")
        .send()
        .await
        .expect("GET / with a forged session");
    assert_eq!(
        forged_session.status(),
        StatusCode::SEE_OTHER,
        "GET / with a forged session"
    );

    let credentials = quickstart.credentials();
    let wrong_password = format!("{}x", credentials.password);
    let login = Session::login(&base, &credentials.username, &wrong_password, None).await;
    assert!(
        matches!(login, Login::Refused { .. }),
        "a wrong password must not open a session"
    );
    let login = Session::login(
        &base,
        &credentials.username,
        &credentials.password,
        Some("forged"),
    )
    .await;
    assert!(
        matches!(login, Login::Refused { .. }),
        "a wrong CSRF token must not open a session"
    );

    // the refusals above are about the credentials, not a broken server: the right ones work
    let key = quickstart.create_api_key("viewer");
    let with_key = client
        .get(format!("{base}/api/v1/alerts"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("GET with a real key");
    assert_eq!(with_key.status(), StatusCode::OK);
    let session = Session::login_ok(&base, &credentials).await;
    session.page("/").await;

    quickstart.stop().await;
}
