//! The SQL origin against real databases: what comes out is what the models read, and queries
//! order and page exactly as the cache does.

mod common;

use cache_core::{Cacheable, IndexQuery, Order, Origin, Query, RecordId, SourceQuery};
use common::{TestDb, backends};
use demo_app::{
    models::{Event, Project, ProjectSort, Referral, User, Vote},
    origin::{OriginSettings, SqlOrigin},
    writes::{NewProject, ProjectChanges},
};

async fn query<T: Cacheable>(origin: &SqlOrigin, query: Query<T>) -> Vec<T> {
    let source = SourceQuery::from_index_query(T::schema(), query.as_index_query()).expect("known fields");
    origin
        .query(T::schema(), &source)
        .await
        .expect("query")
        .into_iter()
        .map(|r| T::from_source(r).expect("reads as the model"))
        .collect()
}

async fn all<T: Cacheable>(origin: &SqlOrigin) -> Vec<T> {
    let source = SourceQuery::from_index_query(T::schema(), &IndexQuery::all()).expect("query");
    origin
        .query(T::schema(), &source)
        .await
        .expect("query")
        .into_iter()
        .map(|r| T::from_source(r).expect("reads as the model"))
        .collect()
}

#[tokio::test]
async fn every_entity_reads_as_its_model() {
    for backend in backends() {
        let test = TestDb::new(backend).await;
        let origin = SqlOrigin::new(test.db.clone(), OriginSettings::default());
        let users = all::<User>(&origin).await;
        let events = all::<Event>(&origin).await;
        assert_eq!(users.len(), 200, "{backend:?}");
        assert_eq!(events.len(), 3);
        assert_eq!(all::<Project>(&origin).await.len(), 30);
        assert_eq!(all::<Vote>(&origin).await.len(), 300);
        assert_eq!(all::<Referral>(&origin).await.len(), 20);
        let event = &events[0];
        assert!(!event.attendees.is_empty());
        let owner = users.iter().find(|u| u.id == *event.owner.id()).expect("owner exists");
        assert!(owner.owned_events.contains(&event.id));
        test.cleanup().await;
    }
}

#[tokio::test]
async fn leaderboard_orders_by_points_then_id_and_pages() {
    for backend in backends() {
        let test = TestDb::new(backend).await;
        let origin = SqlOrigin::new(test.db.clone(), OriginSettings::default());
        let event = all::<Event>(&origin).await.remove(0);

        let mut expected: Vec<Project> = all::<Project>(&origin)
            .await
            .into_iter()
            .filter(|p| p.event.id() == &event.id)
            .collect();
        expected.sort_by(|a, b| b.points.cmp(&a.points).then_with(|| b.id.cmp(&a.id)));
        let ids = |ps: &[Project]| ps.iter().map(|p| p.id.clone()).collect::<Vec<_>>();

        let board = query(&origin, Project::by_event(&event.id).desc(ProjectSort::Points)).await;
        assert_eq!(ids(&board), ids(&expected), "{backend:?}");
        let page = query(
            &origin,
            Project::by_event(&event.id)
                .desc(ProjectSort::Points)
                .offset(2)
                .limit(3),
        )
        .await;
        assert_eq!(ids(&page), ids(&expected[2..5]));
        let tail = query(
            &origin,
            Project::by_event(&event.id).desc(ProjectSort::Points).offset(3),
        )
        .await;
        assert_eq!(ids(&tail), ids(&expected[3..]));

        let oldest_first = query(
            &origin,
            Project::by_event(&event.id).sort(ProjectSort::CreatedAt, Order::Asc),
        )
        .await;
        assert!(oldest_first.windows(2).all(|w| w[0].created_at <= w[1].created_at));
        test.cleanup().await;
    }
}

#[tokio::test]
async fn email_and_slug_lookups() {
    for backend in backends() {
        let test = TestDb::new(backend).await;
        let origin = SqlOrigin::new(test.db.clone(), OriginSettings::default());
        let user = all::<User>(&origin).await.remove(7);
        assert_ne!(user.email, user.email.to_lowercase(), "seeded emails have capitals");
        let shouted = format!("  {}  ", user.email.to_uppercase());
        let found = query(&origin, User::by_email(&shouted)).await;
        assert_eq!(found, [user], "{backend:?}");

        let event = all::<Event>(&origin).await.remove(1);
        let found = query(&origin, Event::by_slug(&event.slug)).await;
        assert_eq!(found, [event]);
        assert!(query(&origin, Event::by_slug("no-such-event")).await.is_empty());
        test.cleanup().await;
    }
}

#[tokio::test]
async fn batches_existence_and_delete() {
    for backend in backends() {
        let test = TestDb::new(backend).await;
        let origin = SqlOrigin::new(test.db.clone(), OriginSettings::default());
        let schema = Project::schema();
        let projects = all::<Project>(&origin).await;
        let missing = RecordId::new("recNOPE0000000000").unwrap();
        let ids = vec![projects[0].id.clone(), missing.clone(), projects[1].id.clone()];

        let mut fetched: Vec<RecordId> = origin
            .fetch_many(schema, &ids)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        fetched.sort();
        let mut expected = vec![projects[0].id.clone(), projects[1].id.clone()];
        expected.sort();
        assert_eq!(fetched, expected, "{backend:?}");
        let mut present = origin.exists_many(schema, &ids).await.unwrap();
        present.sort();
        assert_eq!(present, expected);

        assert!(origin.delete(schema, &projects[0].id).await.unwrap());
        assert!(!origin.delete(schema, &projects[0].id).await.unwrap());
        assert!(origin.fetch(schema, &projects[0].id).await.unwrap().is_none());
        let calls = origin.calls();
        assert_eq!(
            (calls.fetch_many, calls.exists_many, calls.delete, calls.fetch),
            (1, 1, 2, 1)
        );
        test.cleanup().await;
    }
}

#[tokio::test]
async fn writes_bump_the_version_strictly() {
    for backend in backends() {
        let test = TestDb::new(backend).await;
        let origin = SqlOrigin::new(test.db.clone(), OriginSettings::default());
        let event = all::<Event>(&origin).await.remove(0);
        let owner = event.attendees.ids()[0].clone();
        let created = origin
            .insert_project(&NewProject {
                name: "Cache Money".to_owned(),
                description: None,
                event: event.id.clone(),
                owner: owner.clone(),
                collaborators: vec![event.attendees.ids()[1].clone()],
            })
            .await
            .unwrap();
        assert_eq!(created.points, 0, "{backend:?}");
        assert_eq!(created.collaborators.len(), 1);

        let mut last = created.clone();
        for _ in 0..3 {
            let (vote, project) = origin.cast_vote(&created.id, &owner, 2).await.unwrap().unwrap();
            assert_eq!(vote.project.id(), &created.id);
            assert_eq!(project.points, last.points + 2);
            assert!(project.updated_at > last.updated_at, "versions only go up");
            last = project;
        }
        let renamed = origin
            .update_project(
                &created.id,
                &ProjectChanges {
                    name: Some("Cache Rules".to_owned()),
                    ..ProjectChanges::default()
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!((renamed.name.as_str(), renamed.points), ("Cache Rules", 6));
        assert!(renamed.updated_at > last.updated_at);
        assert_eq!(renamed.description, None);

        let nobody = RecordId::new("recNOPE0000000000").unwrap();
        assert!(origin.cast_vote(&nobody, &owner, 1).await.unwrap().is_none());
        assert!(
            origin
                .update_project(&nobody, &ProjectChanges::default())
                .await
                .unwrap()
                .is_none()
        );
        test.cleanup().await;
    }
}
