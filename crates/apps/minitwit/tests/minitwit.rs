//! MiniTwit against the contract in the spec: every route, status and text, on SQLite and on
//! PostgreSQL (when `TEST_DATABASE_URL` is set).

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use conveyor_minitwit::{Hasher, Minitwit, Settings};
use conveyor_queue::Store;
use serde_json::{Value, json};
use tower::ServiceExt;

conveyor_queue::on_both_backends!(
    store:
    latest_is_recorded_first_even_for_refused_requests,
    api_registration_errors_come_in_the_originals_order,
    api_refuses_missing_or_wrong_credentials,
    api_lists_messages_newest_first_and_hides_flagged_ones,
    api_follows_and_unfollows,
    web_register_login_post_logout,
    web_registration_and_login_errors,
    web_timelines_follow_and_unfollow,
    web_timelines_page_beyond_the_first_thirty,
    web_refuses_cross_site_writes_but_takes_plain_forms,
    web_checks_the_origin_the_browser_saw_behind_a_proxy,
    sessions_are_stored_as_digests,
    odd_input_is_refused_alike_on_both_stores,
    stored_hashes_are_upgraded_at_login,
    metrics_count_requests_users_and_messages,
    the_replay_tool_plays_a_scenario_against_a_live_api,
);

const AUTH: &str = "Basic c2ltdWxhdG9yOnN1cGVyX3NhZmUh";

async fn minitwit_with(store: &Store, hasher: Hasher) -> Minitwit {
    conveyor_minitwit::migrate(store).await.expect("migrate");
    Minitwit::new(store.clone(), hasher, Settings::default())
}

async fn apps(store: &Store) -> (Router, Router) {
    let app = minitwit_with(store, Hasher::for_tests()).await;
    (
        conveyor_minitwit::web_router(app.clone()),
        conveyor_minitwit::api_router(app),
    )
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn location(&self) -> &str {
        self.headers[header::LOCATION].to_str().unwrap()
    }
}

async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

/// A simulator request: JSON body, optional credentials.
async fn api(app: &Router, method: Method, uri: &str, body: Option<Value>, auth: bool) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    if auth {
        request = request.header(header::AUTHORIZATION, AUTH);
    }
    let body = match body {
        Some(v) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    send(app, request.body(body).unwrap()).await
}

async fn latest(api_app: &Router) -> i64 {
    api(api_app, Method::GET, "/latest", None, false)
        .await
        .json()["latest"]
        .as_i64()
        .unwrap()
}

async fn latest_is_recorded_first_even_for_refused_requests(store: Store) {
    let (_, app) = apps(&store).await;
    assert_eq!(latest(&app).await, -1, "-1 before any write");

    let reply = api(
        &app,
        Method::POST,
        "/register?latest=5",
        Some(json!({})),
        false,
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(latest(&app).await, 5, "recorded though validation failed");

    let reply = api(&app, Method::GET, "/msgs?latest=7", None, false).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(latest(&app).await, 7, "recorded before the auth check");

    let reply = api(&app, Method::GET, "/msgs/nobody?latest=8", None, true).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(latest(&app).await, 8, "recorded though the user is unknown");

    for ignored in ["abc", "-1", "", "1.5"] {
        api(
            &app,
            Method::GET,
            &format!("/msgs?latest={ignored}"),
            None,
            true,
        )
        .await;
        assert_eq!(latest(&app).await, 8, "{ignored:?} is ignored");
    }
    api(&app, Method::GET, "/msgs?latest=3", None, true).await;
    assert_eq!(
        latest(&app).await,
        3,
        "the last value wins, not the largest"
    );

    // Persisted: a fresh app over the same database reads it back.
    let (_, again) = apps(&store).await;
    assert_eq!(latest(&again).await, 3);
}

async fn register_api(app: &Router, username: &str, email: &str, pwd: &str) -> Reply {
    let body = json!({"username": username, "email": email, "pwd": pwd});
    api(app, Method::POST, "/register", Some(body), false).await
}

async fn api_registration_errors_come_in_the_originals_order(store: Store) {
    let (_, app) = apps(&store).await;
    let cases = [
        (("", "", ""), "You have to enter a username"),
        (("a", "", ""), "You have to enter a valid email address"),
        (
            ("a", "no-at-sign", ""),
            "You have to enter a valid email address",
        ),
        (("a", "a@b", ""), "You have to enter a password"),
    ];
    for ((user, email, pwd), message) in cases {
        let reply = register_api(&app, user, email, pwd).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(reply.json(), json!({"status": 400, "error_msg": message}));
    }
    let reply = register_api(&app, "Roger Histand", "roger@example.com", "q\"u'o\\te").await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.body.is_empty());
    let reply = register_api(&app, "Roger Histand", "other@example.com", "x").await;
    assert_eq!(
        reply.json(),
        json!({"status": 400, "error_msg": "The username is already taken"})
    );

    let reply = api(&app, Method::POST, "/register", None, false).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.json()["error_msg"].as_str().unwrap().contains("JSON"));
    // Escaped characters in bodies arrive decoded.
    let body = r#"{"username": "J\u00fcrgen", "email": "j@x.dk", "pwd": "p"}"#;
    let request = Request::post("/register").body(Body::from(body)).unwrap();
    assert_eq!(send(&app, request).await.status, StatusCode::NO_CONTENT);
    let reply = register_api(&app, "Jürgen", "j@x.dk", "p").await;
    assert_eq!(reply.json()["error_msg"], "The username is already taken");
}

async fn api_refuses_missing_or_wrong_credentials(store: Store) {
    let (_, app) = apps(&store).await;
    register_api(&app, "u", "u@x", "p").await;
    let refused =
        json!({"status": 403, "error_msg": "You are not authorized to use this resource!"});
    let requests = [
        (Method::GET, "/msgs", None),
        (Method::GET, "/msgs/u", None),
        (Method::POST, "/msgs/u", Some(json!({"content": "hi"}))),
        (Method::GET, "/fllws/u", None),
        (Method::POST, "/fllws/u", Some(json!({"follow": "u"}))),
    ];
    for (method, uri, body) in requests {
        let reply = api(&app, method.clone(), uri, body.clone(), false).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {uri}");
        assert_eq!(reply.json(), refused);
        let wrong = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(header::AUTHORIZATION, "Basic d3Jvbmc6d3Jvbmc=")
            .body(Body::from(body.map(|b| b.to_string()).unwrap_or_default()))
            .unwrap();
        assert_eq!(send(&app, wrong).await.status, StatusCode::FORBIDDEN);
    }
    // Nothing was posted by the refused requests.
    let reply = api(&app, Method::GET, "/msgs", None, true).await;
    assert_eq!(reply.json(), json!([]));
}

async fn api_lists_messages_newest_first_and_hides_flagged_ones(store: Store) {
    let (_, app) = apps(&store).await;
    register_api(&app, "Roger Histand", "r@x", "p").await;
    register_api(&app, "other", "o@x", "p").await;
    for (user, text) in [
        ("Roger%20Histand", "first"),
        ("other", "second <b>"),
        ("Roger%20Histand", "third ünï"),
    ] {
        let uri = format!("/msgs/{user}");
        let reply = api(
            &app,
            Method::POST,
            &uri,
            Some(json!({"content": text})),
            true,
        )
        .await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    }
    let reply = api(&app, Method::GET, "/msgs?no=2", None, true).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply
            .body
            .starts_with(r#"[{"content":"third ünï","pub_date":"#),
        "field order content, pub_date, user: {}",
        reply.body
    );
    let list = reply.json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["user"], "Roger Histand");
    assert_eq!(list[1]["content"], "second <b>");
    assert!(
        list[0]["pub_date"].as_i64().unwrap() > 1_600_000_000,
        "Unix seconds"
    );

    let all = api(&app, Method::GET, "/msgs?no=abc", None, true)
        .await
        .json();
    assert_eq!(
        all.as_array().unwrap().len(),
        3,
        "a non-integer no means 100"
    );
    let mine = api(&app, Method::GET, "/msgs/Roger%20Histand", None, true)
        .await
        .json();
    let texts: Vec<&str> = mine
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["third ünï", "first"]);

    let reply = api(&app, Method::GET, "/msgs/nobody", None, true).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = api(
        &app,
        Method::POST,
        "/msgs/nobody",
        Some(json!({"content": "x"})),
        true,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = api(
        &app,
        Method::POST,
        "/msgs/other",
        Some(json!({"text": "x"})),
        true,
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let long = "x".repeat(1001);
    let reply = api(
        &app,
        Method::POST,
        "/msgs/other",
        Some(json!({"content": long})),
        true,
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.body.contains("at most 1000 characters"),
        "{}",
        reply.body
    );

    // Flagging (the original's flag_tool) hides a message everywhere.
    let ids: Vec<(i64,)> = conveyor_queue::dispatch!(store.reader(), pool => {
        sqlx::query_as("SELECT message_id FROM minitwit_message WHERE text = 'first'")
            .fetch_all(pool).await.unwrap()
    });
    let flagged = conveyor_minitwit::db::set_flagged(&store, &[ids[0].0], true)
        .await
        .unwrap();
    assert_eq!(flagged, 1);
    let all = api(&app, Method::GET, "/msgs", None, true).await.json();
    assert_eq!(all.as_array().unwrap().len(), 2);
    let mine = api(&app, Method::GET, "/msgs/Roger%20Histand", None, true)
        .await
        .json();
    assert_eq!(mine.as_array().unwrap().len(), 1);
}

async fn api_follows_and_unfollows(store: Store) {
    let (_, app) = apps(&store).await;
    for user in ["a", "b b", "c"] {
        register_api(&app, user, "x@y", "p").await;
    }
    let follow = |body: Value| {
        let app = app.clone();
        async move {
            api(&app, Method::POST, "/fllws/a", Some(body), true)
                .await
                .status
        }
    };
    assert_eq!(
        follow(json!({"follow": "b b"})).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        follow(json!({"follow": "b b"})).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(follow(json!({"follow": "c"})).await, StatusCode::NO_CONTENT);
    let list = api(&app, Method::GET, "/fllws/a", None, true).await;
    assert_eq!(
        list.json(),
        json!({"follows": ["b b", "c"]}),
        "no duplicate"
    );
    let one = api(&app, Method::GET, "/fllws/a?no=1", None, true).await;
    assert_eq!(one.json()["follows"].as_array().unwrap().len(), 1);

    assert_eq!(
        follow(json!({"unfollow": "c"})).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        follow(json!({"unfollow": "c"})).await,
        StatusCode::NO_CONTENT,
        "not followed: still 204"
    );
    let list = api(&app, Method::GET, "/fllws/a", None, true).await;
    assert_eq!(list.json(), json!({"follows": ["b b"]}));

    assert_eq!(
        follow(json!({"follow": "nobody"})).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        follow(json!({"unfollow": "nobody"})).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        follow(json!({"other": "b b"})).await,
        StatusCode::BAD_REQUEST
    );
    let reply = api(
        &app,
        Method::POST,
        "/fllws/nobody",
        Some(json!({"follow": "a"})),
        true,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = api(&app, Method::GET, "/fllws/nobody", None, true).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

/// A browser: keeps cookies across requests.
struct Browser {
    app: Router,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn new(app: &Router) -> Self {
        Self {
            app: app.clone(),
            cookies: BTreeMap::new(),
        }
    }

    async fn request(
        &mut self,
        method: Method,
        uri: &str,
        form: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "localhost:5000");
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            request = request.header(header::COOKIE, jar.join("; "));
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let body = if form.is_empty() {
            Body::empty()
        } else {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            let encoded: Vec<String> = form
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        conveyor_minitwit::html::percent_encode(k),
                        conveyor_minitwit::html::percent_encode(v)
                    )
                })
                .collect();
            Body::from(encoded.join("&"))
        };
        let reply = send(&self.app, request.body(body).unwrap()).await;
        for value in reply.headers.get_all(header::SET_COOKIE) {
            let value = value.to_str().unwrap();
            assert!(
                value.contains("HttpOnly") && value.contains("SameSite=Lax"),
                "{value}"
            );
            let (pair, attributes) = value.split_once(';').unwrap();
            let (name, content) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), content.to_owned());
            }
        }
        reply
    }

    async fn get(&mut self, uri: &str) -> Reply {
        self.request(Method::GET, uri, &[], &[]).await
    }

    async fn post(&mut self, uri: &str, form: &[(&str, &str)]) -> Reply {
        self.request(Method::POST, uri, form, &[]).await
    }

    /// Follows one redirect, as the tests' `follow_redirects=True` does.
    async fn then(&mut self, reply: Reply) -> Reply {
        assert_eq!(reply.status, StatusCode::FOUND, "{}", reply.body);
        let to = reply.location().to_owned();
        self.get(&to).await
    }

    async fn register(&mut self, user: &str, password: &str) -> Reply {
        let email = format!("{user}@example.com");
        let reply = self
            .post(
                "/register",
                &[
                    ("username", user),
                    ("email", &email),
                    ("password", password),
                    ("password2", password),
                ],
            )
            .await;
        self.then(reply).await
    }

    async fn login(&mut self, user: &str, password: &str) -> Reply {
        let reply = self
            .post("/login", &[("username", user), ("password", password)])
            .await;
        if reply.status == StatusCode::FOUND {
            self.then(reply).await
        } else {
            reply
        }
    }
}

async fn web_register_login_post_logout(store: Store) {
    let (web, _) = apps(&store).await;
    let mut browser = Browser::new(&web);
    let page = browser.get("/register").await;
    assert!(page.body.contains("Sign Up | MiniTwit"));
    let page = browser.register("user1", "default").await;
    assert!(
        page.body
            .contains("You were successfully registered and can login now"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Sign In | MiniTwit"));
    let again = browser.get("/login").await;
    assert!(
        !again.body.contains("successfully registered"),
        "a flash shows once"
    );

    let page = browser.login("user1", "default").await;
    assert!(page.body.contains("You were logged in"));
    assert!(page.body.contains("My Timeline | MiniTwit"));
    assert!(page.body.contains("There's no message so far."));

    let reply = browser
        .post("/add_message", &[("text", "test message 1")])
        .await;
    assert_eq!(reply.location(), "/");
    let page = browser.then(reply).await;
    assert!(page.body.contains("Your message was recorded"));
    let reply = browser
        .post("/add_message", &[("text", "<test message 2>")])
        .await;
    let page = browser.then(reply).await;
    assert!(page.body.contains("test message 1"));
    assert!(
        page.body.contains("&lt;test message 2&gt;"),
        "{}",
        page.body
    );
    let reply = browser
        .post("/add_message", &[("text", r#"a & "b" 'c'"#)])
        .await;
    let page = browser.then(reply).await;
    assert!(
        page.body.contains("a &amp; &#34;b&#34; &#39;c&#39;"),
        "{}",
        page.body
    );
    let reply = browser.post("/add_message", &[("text", "")]).await;
    assert_eq!(reply.status, StatusCode::FOUND, "empty text is ignored");
    let page = browser.then(reply).await;
    assert!(!page.body.contains("Your message was recorded"));

    let public = browser.get("/public").await;
    assert!(public.body.contains("Public Timeline | MiniTwit"));
    assert!(public.body.contains("&lt;test message 2&gt;"));
    let user_page = browser.get("/user1").await;
    assert!(user_page.body.contains("user1's Timeline | MiniTwit"));
    assert!(user_page.body.contains("This is you!"));

    let reply = browser.get("/logout").await;
    assert_eq!(reply.location(), "/public");
    let page = browser.then(reply).await;
    assert!(page.body.contains("You were logged out"));
    let reply = browser.get("/").await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert_eq!(reply.location(), "/public");
    let reply = browser.post("/add_message", &[("text", "sneaky")]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

async fn web_registration_and_login_errors(store: Store) {
    let (web, _) = apps(&store).await;
    let mut browser = Browser::new(&web);
    browser.register("user1", "default").await;
    let cases: [(&[(&str, &str)], &str); 6] = [
        (
            &[
                ("username", ""),
                ("email", "a@b"),
                ("password", "p"),
                ("password2", "p"),
            ],
            "You have to enter a username",
        ),
        (
            &[
                ("username", "x"),
                ("email", ""),
                ("password", "p"),
                ("password2", "p"),
            ],
            "You have to enter a valid email address",
        ),
        (
            &[
                ("username", "x"),
                ("email", "broken"),
                ("password", "p"),
                ("password2", "p"),
            ],
            "You have to enter a valid email address",
        ),
        (
            &[
                ("username", "x"),
                ("email", "a@b"),
                ("password", ""),
                ("password2", ""),
            ],
            "You have to enter a password",
        ),
        (
            &[
                ("username", "x"),
                ("email", "a@b"),
                ("password", "1"),
                ("password2", "2"),
            ],
            "The two passwords do not match",
        ),
        (
            &[
                ("username", "user1"),
                ("email", "a@b"),
                ("password", "p"),
                ("password2", "p"),
            ],
            "The username is already taken",
        ),
    ];
    for (form, message) in cases {
        let page = browser.post("/register", form).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains(message), "{message}: {}", page.body);
    }
    let page = browser.login("user2", "default").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Invalid username"));
    let page = browser.login("user1", "wrong").await;
    assert!(page.body.contains("Invalid password"));
    assert!(
        browser
            .login("user1", "default")
            .await
            .body
            .contains("You were logged in")
    );
}

async fn web_timelines_follow_and_unfollow(store: Store) {
    let (web, _) = apps(&store).await;
    let mut author = Browser::new(&web);
    author.register("foo", "default").await;
    author.login("foo", "default").await;
    author
        .post("/add_message", &[("text", "the message by foo")])
        .await;
    author.get("/logout").await;

    let mut reader = Browser::new(&web);
    reader.register("bar", "default").await;
    reader.login("bar", "default").await;
    reader
        .post("/add_message", &[("text", "the message by bar")])
        .await;

    let page = reader.get("/").await;
    assert!(page.body.contains("the message by bar"));
    assert!(
        !page.body.contains("the message by foo"),
        "not followed yet"
    );
    let page = reader.get("/foo").await;
    assert!(page.body.contains("foo's Timeline | MiniTwit"));
    assert!(page.body.contains("You are not yet following this user."));

    let reply = reader.get("/foo/follow").await;
    assert_eq!(reply.location(), "/foo");
    let page = reader.then(reply).await;
    assert!(
        page.body.contains("You are now following &#34;foo&#34;"),
        "{}",
        page.body
    );
    assert!(page.body.contains("You are currently following this user."));
    let page = reader.get("/").await;
    assert!(page.body.contains("the message by foo") && page.body.contains("the message by bar"));
    let page = reader.get("/bar").await;
    assert!(page.body.contains("the message by bar") && !page.body.contains("the message by foo"));
    let page = reader.get("/foo").await;
    assert!(page.body.contains("the message by foo") && !page.body.contains("the message by bar"));

    let reply = reader.get("/foo/unfollow").await;
    let page = reader.then(reply).await;
    assert!(
        page.body
            .contains("You are no longer following &#34;foo&#34;")
    );
    let page = reader.get("/").await;
    assert!(!page.body.contains("the message by foo"));

    assert_eq!(reader.get("/nobody").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        reader.get("/nobody/follow").await.status,
        StatusCode::NOT_FOUND
    );
    let mut stranger = Browser::new(&web);
    assert_eq!(
        stranger.get("/foo/follow").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        stranger.get("/foo/unfollow").await.status,
        StatusCode::UNAUTHORIZED
    );
    let page = stranger.get("/foo").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("following this user"));
    let css = stranger.get("/static/style.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
}

async fn web_timelines_page_beyond_the_first_thirty(store: Store) {
    let (web, _) = apps(&store).await;
    let mut browser = Browser::new(&web);
    browser.register("writer", "p").await;
    browser.login("writer", "p").await;
    for n in 0..65 {
        browser
            .post(
                "/add_message",
                &[("text", &format!("message number {n:03}"))],
            )
            .await;
    }
    let count = |body: &str| body.matches("message number ").count();
    let first = browser.get("/public").await;
    assert_eq!(count(&first.body), 30);
    assert!(first.body.contains("message number 064"), "newest first");
    assert!(first.body.contains("href=\"?p=2\""));
    let third = browser.get("/public?p=3").await;
    assert_eq!(count(&third.body), 5);
    assert!(third.body.contains("message number 000"));
    assert!(!third.body.contains("?p=4"));
    assert_eq!(count(&browser.get("/writer?p=2").await.body), 30);
    assert_eq!(count(&browser.get("/?p=3").await.body), 5);
    assert_eq!(
        browser.get("/public?p=0").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        browser.get("/public?p=x").await.status,
        StatusCode::BAD_REQUEST
    );
}

async fn web_refuses_cross_site_writes_but_takes_plain_forms(store: Store) {
    let (web, _) = apps(&store).await;
    let mut browser = Browser::new(&web);
    browser.register("me", "p").await;
    browser.login("me", "p").await;
    let form = [("text", "hello")];
    let evil = browser
        .request(
            Method::POST,
            "/add_message",
            &form,
            &[("origin", "http://evil.example")],
        )
        .await;
    assert_eq!(evil.status, StatusCode::FORBIDDEN);
    let fetch = browser
        .request(
            Method::GET,
            "/me/follow",
            &[],
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(fetch.status, StatusCode::FORBIDDEN);
    let same = browser
        .request(
            Method::POST,
            "/add_message",
            &form,
            &[("origin", "http://localhost:5000")],
        )
        .await;
    assert_eq!(same.status, StatusCode::FOUND);
    let plain = browser.post("/add_message", &form).await;
    assert_eq!(plain.status, StatusCode::FOUND);
    let page = browser.get("/me").await;
    assert_eq!(
        page.body.matches("hello").count(),
        2,
        "the refused post stored nothing"
    );
}

async fn stored_hashes_are_upgraded_at_login(store: Store) {
    let old = minitwit_with(&store, Hasher::new(512, 1, 1).unwrap()).await;
    let api_app = conveyor_minitwit::api_router(old);
    assert_eq!(
        register_api(&api_app, "legacy", "l@x", "secret")
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let stored = || async {
        conveyor_minitwit::db::credentials(&store, "legacy")
            .await
            .unwrap()
            .unwrap()
            .1
    };
    assert!(stored().await.contains("m=512,t=1,p=1"));

    let (web, _) = apps(&store).await;
    let mut browser = Browser::new(&web);
    assert!(
        browser
            .login("legacy", "secret")
            .await
            .body
            .contains("You were logged in")
    );
    let upgraded = stored().await;
    assert!(
        upgraded.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
        "{upgraded}"
    );
    browser.get("/logout").await;
    assert!(
        browser
            .login("legacy", "secret")
            .await
            .body
            .contains("You were logged in")
    );
}

async fn metrics_count_requests_users_and_messages(store: Store) {
    let (_, app) = apps(&store).await;
    register_api(&app, "m1", "m@x", "p").await;
    register_api(&app, "m2", "m@x", "p").await;
    api(
        &app,
        Method::POST,
        "/msgs/m1",
        Some(json!({"content": "x"})),
        true,
    )
    .await;
    api(
        &app,
        Method::POST,
        "/fllws/m1",
        Some(json!({"follow": "m2"})),
        true,
    )
    .await;
    let page = api(&app, Method::GET, "/metrics", None, false).await;
    assert_eq!(page.status, StatusCode::OK);
    // Gauges are process-wide and tests share the process, so read the line, not a total.
    for (name, at_least) in [
        ("minitwit_users", 2.0),
        ("minitwit_messages", 1.0),
        ("minitwit_follows", 1.0),
    ] {
        let line = page
            .body
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing"));
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(value >= at_least, "{line}");
    }
    assert!(
        page.body.contains(r#"listener="minitwit-api""#),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"route="/msgs/{username}""#));
}

/// The scenario replay against a real listener: a small inline scenario, then the course's
/// sample scenario's first 1,000 actions when `../shared` is present.
async fn the_replay_tool_plays_a_scenario_against_a_live_api(store: Store) {
    use conveyor_minitwit::simulate::{parse, replay};
    use std::time::Duration;

    let (_, app) = apps(&store).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let inline = "1\t0\t0\tregister\tAnn Lee\tann@x.dk\tq\"u'o\\te\n\
                  2\t0\t0\tregister\tBo\tbo@x.dk\tpw\n\
                  3\t0\t0\ttweet\tAnn Lee\tHej <b>ünï</b> & \"co\"\n\
                  4\t0\t0\tfollow\tBo\tAnn Lee\n\
                  5\t0\t0\tunfollow\tBo\tAnn Lee\n\
                  6\t0\t0\tunfollow\tBo\tAnn Lee\n\
                  7\t0\t0\ttweet\tNobody\tlost\n";
    let actions = parse(inline).unwrap();
    let report = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || replay(&url, &actions, Duration::from_secs(5)))
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(report.actions, 7);
    assert_eq!(
        report.errors, 1,
        "the unknown user's tweet is a 404: {report}"
    );
    assert!(report.first_errors[0].contains("action 7"), "{report}");
    assert!(report.latest_matches, "{report}");
    let list = api(
        &app_for(&store).await,
        Method::GET,
        "/msgs/Ann%20Lee",
        None,
        true,
    )
    .await;
    assert_eq!(list.json()[0]["content"], "Hej <b>ünï</b> & \"co\"");

    // A generated scenario of the course's shape replays without an error.
    let generated = conveyor_minitwit::simulate::generate(500, 3);
    let report = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || replay(&url, &generated, Duration::from_secs(5)))
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!((report.actions, report.errors), (500, 0), "{report}");
    assert!(report.latest_matches, "{report}");

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../../shared/data/minitwit/minitwit_scenario.csv");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("skipped the sample scenario: {} is absent", path.display());
        return;
    };
    let mut actions = parse(&text).unwrap();
    actions.truncate(1000);
    let report =
        tokio::task::spawn_blocking(move || replay(&url, &actions, Duration::from_secs(5)))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(report.errors, 0, "{report}");
    assert_eq!(report.registrations_refused, 0, "{report}");
    assert!(report.latest_matches, "{report}");
}

async fn app_for(store: &Store) -> Router {
    apps(store).await.1
}

async fn web_checks_the_origin_the_browser_saw_behind_a_proxy(store: Store) {
    use axum::extract::connect_info::MockConnectInfo;
    use std::net::SocketAddr;
    let app = minitwit_with(&store, Hasher::for_tests()).await;
    let from = |peer: [u8; 4], app: &Minitwit| {
        conveyor_minitwit::web_router(app.clone())
            .layer(MockConnectInfo(SocketAddr::from((peer, 9000))))
    };
    let form = [("text", "hello")];
    let forwarded = [
        ("x-forwarded-host", "minitwit.example.org"),
        ("x-forwarded-proto", "https"),
    ];
    // Through a trusted proxy (loopback by default) the site is what the proxy says.
    let mut proxied = Browser::new(&from([127, 0, 0, 1], &app));
    proxied.register("me", "p").await;
    proxied.login("me", "p").await;
    let with = |origin: &'static str| {
        let mut headers = forwarded.to_vec();
        headers.push(("origin", origin));
        headers
    };
    let ok = proxied
        .request(
            Method::POST,
            "/add_message",
            &form,
            &with("https://minitwit.example.org"),
        )
        .await;
    assert_eq!(ok.status, StatusCode::FOUND);
    let bad = proxied
        .request(
            Method::POST,
            "/add_message",
            &form,
            &with("http://minitwit.example.org"),
        )
        .await;
    assert_eq!(
        bad.status,
        StatusCode::FORBIDDEN,
        "the scheme is part of the origin"
    );
    let bad = proxied
        .request(
            Method::POST,
            "/add_message",
            &form,
            &with("http://localhost:5000"),
        )
        .await;
    assert_eq!(bad.status, StatusCode::FORBIDDEN);
    // From a peer that is no proxy of ours, forwarded headers are not believed.
    let mut direct = Browser::new(&from([203, 0, 113, 5], &app));
    direct.login("me", "p").await;
    let forged = direct
        .request(
            Method::POST,
            "/add_message",
            &form,
            &with("https://minitwit.example.org"),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let same = direct
        .request(
            Method::POST,
            "/add_message",
            &form,
            &[("origin", "http://localhost:5000")],
        )
        .await;
    assert_eq!(same.status, StatusCode::FOUND);
    // MINITWIT_PUBLIC_URL names the site outright.
    let settings = Settings {
        public_origin: Some("https://twit.example".into()),
        ..Settings::default()
    };
    let fixed = Minitwit::new(store.clone(), Hasher::for_tests(), settings);
    let mut browser = Browser::new(&from([203, 0, 113, 5], &fixed));
    browser.login("me", "p").await;
    let ok = browser
        .request(
            Method::POST,
            "/add_message",
            &form,
            &[("origin", "https://twit.example")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::FOUND);
    let bad = browser
        .request(
            Method::POST,
            "/add_message",
            &form,
            &[("origin", "http://localhost:5000")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::FORBIDDEN);
    let page = browser.get("/me").await;
    assert_eq!(
        page.body.matches("hello").count(),
        3,
        "refused posts stored nothing"
    );
}

async fn sessions_are_stored_as_digests(store: Store) {
    let (web, _) = apps(&store).await;
    let mut browser = Browser::new(&web);
    browser.register("me", "p").await;
    browser.login("me", "p").await;
    let cookie = browser.cookies["minitwit_session"].clone();
    let stored: Vec<String> = conveyor_queue::dispatch!(store.reader(), pool => {
        sqlx::query_scalar("SELECT token FROM minitwit_session")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], cookie, "the cookie's token is not in the table");
    assert_eq!(stored[0].len(), 64, "a SHA-256 in hex: {}", stored[0]);
    // A stolen table opens no session: its value as a cookie is nobody.
    let mut thief = Browser::new(&web);
    thief
        .cookies
        .insert("minitwit_session".into(), stored[0].clone());
    let page = thief.get("/").await;
    assert_eq!(
        page.status,
        StatusCode::FOUND,
        "sent to the public timeline"
    );
    // The cookie itself still works, and logging out removes the row.
    assert_eq!(browser.get("/").await.status, StatusCode::OK);
    browser.get("/logout").await;
    let left: i64 = conveyor_queue::dispatch!(store.reader(), pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM minitwit_session")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(left, 0);
}

async fn odd_input_is_refused_alike_on_both_stores(store: Store) {
    let (web, api_app) = apps(&store).await;
    // A NUL, which PostgreSQL cannot store, in every place a client can put one.
    let refused = api(
        &api_app,
        Method::POST,
        "/register",
        Some(json!({"username": "a\u{0}b", "email": "a@b", "pwd": "p"})),
        true,
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert!(refused.body.contains("body.username"), "{}", refused.body);
    for uri in ["/msgs/a%00b", "/fllws/x%00", "/msgs?no=%00"] {
        let reply = api(&api_app, Method::GET, uri, None, true).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{uri}: {}",
            reply.body
        );
    }
    let mut browser = Browser::new(&web);
    let form = browser
        .post(
            "/register",
            &[
                ("username", "a\u{0}b"),
                ("email", "a@b"),
                ("password", "p"),
                ("password2", "p"),
            ],
        )
        .await;
    assert_eq!(form.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(browser.get("/a%00b").await.status, StatusCode::BAD_REQUEST);
    // Control characters in a username, and ?no= beyond its documented range.
    let control = api(
        &api_app,
        Method::POST,
        "/register",
        Some(json!({"username": "bell\u{7}", "email": "a@b", "pwd": "p"})),
        true,
    )
    .await;
    assert_eq!(control.status, StatusCode::BAD_REQUEST, "{}", control.body);
    assert!(
        control.body.contains("control characters"),
        "{}",
        control.body
    );
    for (no, status) in [("10001", 400), ("-1", 400), ("10000", 200), ("x", 200)] {
        let reply = api(&api_app, Method::GET, &format!("/msgs?no={no}"), None, true).await;
        assert_eq!(reply.status.as_u16(), status, "no={no}: {}", reply.body);
    }
    let users: i64 = conveyor_queue::dispatch!(store.reader(), pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM minitwit_user")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(users, 0, "nothing stored");
}
